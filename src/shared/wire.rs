//! The batches instances publish to each other: `FS1`, the sender's random identity
//! (8 bytes, little endian), then records of 25 bytes: a kind (`s` a stick entry, `r` a
//! rate count), the table's or limit's identity, the key and the value (the backend's
//! identity, or the count), each 8 bytes little endian. Anything else is ignored.

/// One record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// `b's'` or `b'r'`.
    pub kind: u8,
    /// The table or limit.
    pub id: u64,
    /// The key.
    pub key: u64,
    /// The backend, or the count.
    pub value: u64,
}

const MAGIC: &[u8; 3] = b"FS1";
const HEAD: usize = MAGIC.len() + 8;
const RECORD: usize = 25;

/// Most records in one message (about 64 KiB).
pub const MOST: usize = 2600;

/// A batch being written.
#[derive(Debug)]
pub struct Batch {
    bytes: Vec<u8>,
}

impl Batch {
    /// An empty batch from instance `sender`.
    pub fn new(sender: u64) -> Batch {
        let mut bytes = Vec::with_capacity(HEAD + 64 * RECORD);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&sender.to_le_bytes());
        Batch { bytes }
    }

    /// Adds `r`.
    pub fn push(&mut self, r: Record) {
        self.bytes.push(r.kind);
        for n in [r.id, r.key, r.value] {
            self.bytes.extend_from_slice(&n.to_le_bytes());
        }
    }

    /// Records in it.
    pub fn len(&self) -> usize {
        (self.bytes.len() - HEAD) / RECORD
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Empties it, keeping the head.
    pub fn clear(&mut self) {
        self.bytes.truncate(HEAD);
    }
}

/// The sender and records of `message`, unless it is not a batch.
pub fn read(message: &[u8]) -> Option<(u64, impl Iterator<Item = Record> + '_)> {
    let rest = message.strip_prefix(MAGIC)?;
    let (sender, records) = rest.split_first_chunk::<8>()?;
    if records.len() % RECORD != 0 {
        return None;
    }
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    Some((
        u64::from_le_bytes(*sender),
        records.chunks_exact(RECORD).map(move |r| Record {
            kind: r[0],
            id: word(&r[1..9]),
            key: word(&r[9..17]),
            value: word(&r[17..25]),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_read_back_and_garbage_is_refused() {
        let mut b = Batch::new(7);
        assert!(b.is_empty());
        let records = [
            Record {
                kind: b's',
                id: 1,
                key: u64::MAX,
                value: 3,
            },
            Record {
                kind: b'r',
                id: 4,
                key: 5,
                value: 6,
            },
        ];
        for r in records {
            b.push(r);
        }
        assert_eq!(b.len(), 2);
        let (sender, read_back) = read(b.bytes()).unwrap();
        assert_eq!(sender, 7);
        assert_eq!(read_back.collect::<Vec<_>>(), records);
        assert!(read(b"FS1").is_none());
        assert!(read(&b.bytes()[..b.bytes().len() - 1]).is_none());
        assert!(read(b"hello, world").is_none());
        b.clear();
        assert_eq!(read(b.bytes()).unwrap().1.count(), 0);
    }
}
