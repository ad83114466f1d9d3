//! The HPACK decoder (RFC 7541 6): reads a header block into fields, keeping the
//! connection's dynamic table in step with the client's encoder.
//!
//! Every block must be decoded whole, even one whose request will be refused: the
//! dynamic table is the connection's, and skipping a field would desynchronize it. Any
//! error here is a COMPRESSION_ERROR, a connection error (RFC 9113 4.3). Whether the
//! fields make a valid request is the caller's business.

use std::ops::Range;

use super::huffman;
use super::table::{Dynamic, STATIC};

/// A header block HPACK cannot read: the connection must end with COMPRESSION_ERROR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionError(pub &'static str);

impl std::fmt::Display for CompressionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HPACK: {}", self.0)
    }
}

impl std::error::Error for CompressionError {}

/// One decoded field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
    /// The name's index in the static table (1-61), when it came from there: the caller
    /// may map it to a known header name without parsing.
    pub static_name: Option<u8>,
}

/// A decoder: one per connection and direction.
#[derive(Debug)]
pub struct Decoder {
    table: Dynamic,
    /// The largest table the encoder may ask for (our SETTINGS_HEADER_TABLE_SIZE).
    limit: usize,
    name: Vec<u8>,
    value: Vec<u8>,
}

/// Where a name is, until it is looked at.
#[derive(Clone)]
enum Name {
    Static(usize),
    Dynamic(usize),
    Block(Range<usize>),
    Scratch,
}

/// Where a value is.
enum Value {
    Block(Range<usize>),
    Scratch,
}

impl Decoder {
    /// A decoder whose table may grow to `limit` bytes (4,096 is HTTP/2's default).
    pub fn new(limit: usize) -> Decoder {
        Decoder {
            table: Dynamic::new(limit),
            limit,
            name: Vec::new(),
            value: Vec::new(),
        }
    }

    /// The dynamic table's current size (RFC 7541 4.1).
    pub fn table_size(&self) -> usize {
        self.table.size()
    }

    /// Decodes a whole header block, calling `field` for each field in order.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(Field<'_>),
    ) -> Result<(), CompressionError> {
        let mut at = 0;
        let mut fields = 0usize;
        while at < block.len() {
            let first = block[at];
            if first & 0x80 != 0 {
                // Indexed field.
                let (index, n) = integer(&block[at..], 7)?;
                at += n;
                let name = self.lookup(index)?;
                self.emit_indexed(name, index, &mut field);
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update: only before the first field (RFC 7541 4.2).
                let (size, n) = integer(&block[at..], 5)?;
                at += n;
                if fields > 0 {
                    return Err(CompressionError("table size update after a field"));
                }
                if size > self.limit {
                    return Err(CompressionError("table size update over the limit"));
                }
                self.table.set_max(size);
                continue;
            } else {
                // A literal: with incremental indexing (01), never indexed (0001) or
                // without indexing (0000).
                let (prefix, index) = if first & 0x40 != 0 {
                    (6, true)
                } else {
                    (4, false)
                };
                let (name_index, n) = integer(&block[at..], prefix)?;
                at += n;
                let name = if name_index == 0 {
                    let (range, huff, n) = string(block, at)?;
                    at += n;
                    if huff {
                        self.name.clear();
                        huffman::decode(&block[range], &mut self.name)
                            .map_err(|_| CompressionError("bad Huffman name"))?;
                        Name::Scratch
                    } else {
                        Name::Block(range)
                    }
                } else {
                    self.lookup(name_index)?
                };
                let (range, huff, n) = string(block, at)?;
                at += n;
                let value = if huff {
                    self.value.clear();
                    huffman::decode(&block[range], &mut self.value)
                        .map_err(|_| CompressionError("bad Huffman value"))?;
                    Value::Scratch
                } else {
                    Value::Block(range)
                };
                let static_name = match name {
                    Name::Static(i) => Some(i as u8 + 1),
                    _ => None,
                };
                // A dynamic name about to be inserted moves to the scratch buffer: the
                // insert may evict the entry it is read from.
                let name = match (index, name) {
                    (true, Name::Dynamic(i)) => {
                        let (n, _) = self.table.get(i).expect("looked up");
                        self.name.clear();
                        self.name.extend_from_slice(n);
                        Name::Scratch
                    }
                    (_, name) => name,
                };
                {
                    let n = self.name_bytes(&name, block);
                    let v = match &value {
                        Value::Block(r) => &block[r.clone()],
                        Value::Scratch => &self.value[..],
                    };
                    field(Field {
                        name: n,
                        value: v,
                        static_name,
                    });
                }
                if index {
                    let v = match &value {
                        Value::Block(r) => &block[r.clone()],
                        Value::Scratch => &self.value[..],
                    };
                    match &name {
                        Name::Static(i) => self.table.insert(STATIC[*i].0.as_bytes(), v),
                        Name::Block(r) => self.table.insert(&block[r.clone()], v),
                        Name::Scratch => self.table.insert(&self.name, v),
                        Name::Dynamic(_) => unreachable!("moved to scratch"),
                    }
                }
            }
            fields += 1;
        }
        Ok(())
    }

    /// An index of the static table (1-61) or the dynamic one (62 and up).
    fn lookup(&self, index: usize) -> Result<Name, CompressionError> {
        match index {
            0 => Err(CompressionError("index 0")),
            1..=61 => Ok(Name::Static(index - 1)),
            _ if index - 62 < self.table.len() => Ok(Name::Dynamic(index - 62)),
            _ => Err(CompressionError("index past the tables")),
        }
    }

    fn emit_indexed(&self, name: Name, index: usize, field: &mut impl FnMut(Field<'_>)) {
        match name {
            Name::Static(i) => field(Field {
                name: STATIC[i].0.as_bytes(),
                value: STATIC[i].1.as_bytes(),
                static_name: Some(index as u8),
            }),
            Name::Dynamic(i) => {
                let (n, v) = self.table.get(i).expect("looked up");
                field(Field {
                    name: n,
                    value: v,
                    static_name: None,
                })
            }
            Name::Block(_) | Name::Scratch => unreachable!("an index"),
        }
    }

    fn name_bytes<'a>(&'a self, name: &Name, block: &'a [u8]) -> &'a [u8] {
        match name {
            Name::Static(i) => STATIC[*i].0.as_bytes(),
            Name::Dynamic(i) => self.table.get(*i).expect("looked up").0,
            Name::Block(r) => &block[r.clone()],
            Name::Scratch => &self.name,
        }
    }
}

/// An integer with an `n`-bit prefix (RFC 7541 5.1): its value and the bytes it took.
/// Values past 2^28 are refused (no header block needs them).
fn integer(buf: &[u8], n: u32) -> Result<(usize, usize), CompressionError> {
    let max = (1usize << n) - 1;
    let mut value = (buf[0] as usize) & max;
    if value < max {
        return Ok((value, 1));
    }
    let mut shift = 0;
    for (i, &b) in buf[1..].iter().enumerate() {
        value += ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            return Ok((value, i + 2));
        }
        shift += 7;
        if shift > 21 {
            return Err(CompressionError("integer too large"));
        }
    }
    Err(CompressionError("integer cut short"))
}

/// A string literal at `at` (RFC 7541 5.2): where its bytes are, whether they are
/// Huffman-coded, and how many bytes it took with its length.
fn string(block: &[u8], at: usize) -> Result<(Range<usize>, bool, usize), CompressionError> {
    let Some(&first) = block.get(at) else {
        return Err(CompressionError("string missing"));
    };
    let (len, n) = integer(&block[at..], 7)?;
    let start = at + n;
    if len > block.len() - start {
        return Err(CompressionError("string past the block"));
    }
    Ok((start..start + len, first & 0x80 != 0, n + len))
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
