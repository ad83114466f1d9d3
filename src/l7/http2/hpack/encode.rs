//! The HPACK encoder of Fulcrum's response heads: stateless, so that a response head is
//! written in one pass with no table to keep per connection.
//!
//! `:status` is one byte for the seven statuses of the static table (200, 204, 206, 304,
//! 400, 404, 500) and a literal otherwise; every other field is a literal "without
//! indexing" (RFC 7541 6.2.2), its name an index of the static table where it has one.
//! Strings are not Huffman-coded: on the links a proxy serves, the few bytes saved cost
//! more CPU than they save.

use super::table::STATIC;

/// Writes `:status`.
pub fn encode_status(status: u16, out: &mut Vec<u8>) {
    let indexed = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => 0,
    };
    if indexed != 0 {
        out.push(0x80 | indexed);
        return;
    }
    // Literal without indexing, name index 8 (:status), three digits.
    let s = status.min(999);
    out.extend_from_slice(&[
        0x08,
        3,
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]);
}

/// Writes one field (its name in lower case, as HTTP/2 requires).
pub fn encode_field(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    match static_name(name) {
        Some(i) => integer(i, 4, 0x00, out),
        None => {
            out.push(0x00);
            integer(name.len(), 7, 0x00, out);
            out.extend_from_slice(name);
        }
    }
    integer(value.len(), 7, 0x00, out);
    out.extend_from_slice(value);
}

/// The static table's index for a name (the first entry with it).
fn static_name(name: &[u8]) -> Option<usize> {
    // Response heads mostly carry these; the rest are looked up in the table.
    let i = match name {
        b"content-type" => 31,
        b"content-length" => 28,
        b"date" => 33,
        b"server" => 54,
        b"cache-control" => 24,
        b"set-cookie" => 55,
        b"location" => 46,
        b"etag" => 34,
        b"last-modified" => 44,
        b"content-encoding" => 26,
        b"vary" => 59,
        _ => {
            if name.first() == Some(&b':') || name.len() > 27 {
                return None;
            }
            return STATIC[14..]
                .iter()
                .position(|(n, _)| n.as_bytes() == name)
                .map(|p| p + 15);
        }
    };
    Some(i)
}

/// An integer with an `n`-bit prefix after the bits `flags` (RFC 7541 5.1).
fn integer(value: usize, n: u32, flags: u8, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

#[cfg(test)]
mod tests {
    use super::super::Decoder;
    use super::*;

    fn decoded(block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        Decoder::new(4096)
            .decode(block, |f| out.push((f.name.to_vec(), f.value.to_vec())))
            .unwrap();
        out
    }

    #[test]
    fn statuses_round_trip() {
        for status in [200, 204, 206, 304, 400, 404, 500, 101, 302, 503, 999] {
            let mut out = Vec::new();
            encode_status(status, &mut out);
            let want = status.to_string().into_bytes();
            assert_eq!(decoded(&out), [(b":status".to_vec(), want)]);
        }
        let mut out = Vec::new();
        encode_status(200, &mut out);
        assert_eq!(out, [0x88]);
    }

    #[test]
    fn fields_round_trip() {
        let long = vec![b'v'; 300];
        let fields: Vec<(&[u8], &[u8])> = vec![
            (b"content-type", b"text/plain"),
            (b"www-authenticate", b"Basic"),
            (b"accept-ranges", b"bytes"),
            (b"x-fulcrum-backend", b"a"),
            (b"x-long", &long),
            (b"content-length", b""),
        ];
        let mut out = Vec::new();
        for (n, v) in &fields {
            encode_field(n, v, &mut out);
        }
        let got = decoded(&out);
        let want: Vec<_> = fields
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(got, want);
        // content-type: name index 31 in 4 bits (15, then 16).
        assert_eq!(&out[..3], &[0x0f, 0x10, 10]);
    }

    #[test]
    fn static_names_are_found() {
        assert_eq!(static_name(b"accept-ranges"), Some(18));
        assert_eq!(static_name(b"www-authenticate"), Some(61));
        assert_eq!(static_name(b"age"), Some(21));
        assert_eq!(static_name(b":path"), None);
        assert_eq!(static_name(b"x-custom"), None);
    }
}
