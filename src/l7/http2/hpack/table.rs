//! HPACK's header tables (RFC 7541 2.3): the static table of 61 fields every peer knows,
//! and the dynamic table a decoder builds from the fields the encoder chose to index.
//!
//! The dynamic table counts its size as RFC 7541 4.1 does (name, value, and 32 bytes per
//! entry) and evicts its oldest entries to stay within its maximum, which the encoder
//! sets (within the limit the decoder advertised in SETTINGS_HEADER_TABLE_SIZE).

use std::collections::VecDeque;

/// RFC 7541 Appendix A: index 1 is the first entry.
pub const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// What an entry costs beside its name and value (RFC 7541 4.1).
pub const ENTRY_OVERHEAD: usize = 32;

/// The dynamic table: the newest entry first.
#[derive(Debug)]
pub struct Dynamic {
    /// Each entry's name and value, one allocation: `(bytes, name length)`.
    entries: VecDeque<(Box<[u8]>, usize)>,
    size: usize,
    max: usize,
}

impl Dynamic {
    pub fn new(max: usize) -> Dynamic {
        Dynamic {
            entries: VecDeque::new(),
            size: 0,
            max,
        }
    }

    /// Entry `i` (0 = the newest) as `(name, value)`.
    pub fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        self.entries.get(i).map(|(b, n)| b.split_at(*n))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The table's size as RFC 7541 counts it.
    pub fn size(&self) -> usize {
        self.size
    }

    /// A new maximum size (a dynamic table size update): entries are evicted to fit.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
        self.evict(0);
    }

    /// Adds a field as the newest entry, evicting the oldest ones to make room. A field
    /// larger than the whole table empties it and is not added (RFC 7541 4.4).
    pub fn insert(&mut self, name: &[u8], value: &[u8]) {
        let cost = name.len() + value.len() + ENTRY_OVERHEAD;
        if cost > self.max {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict(cost);
        let mut bytes = Vec::with_capacity(name.len() + value.len());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(value);
        self.entries
            .push_front((bytes.into_boxed_slice(), name.len()));
        self.size += cost;
    }

    /// Evicts the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            let Some((b, _)) = self.entries.pop_back() else {
                break;
            };
            self.size -= b.len() + ENTRY_OVERHEAD;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_oldest_to_fit() {
        let mut t = Dynamic::new(100);
        t.insert(b"aaaa", b"1111"); // 40
        t.insert(b"bbbb", b"2222"); // 80
        assert_eq!((t.len(), t.size()), (2, 80));
        t.insert(b"cccc", b"3333"); // the first goes
        assert_eq!((t.len(), t.size()), (2, 80));
        assert_eq!(t.get(0), Some((&b"cccc"[..], &b"3333"[..])));
        assert_eq!(t.get(1), Some((&b"bbbb"[..], &b"2222"[..])));
        assert_eq!(t.get(2), None);
        t.set_max(50);
        assert_eq!((t.len(), t.size()), (1, 40));
        // Larger than the table: empties it.
        t.insert(&[b'x'; 30], b"");
        assert!(t.is_empty());
        assert_eq!(t.size(), 0);
    }

    #[test]
    fn the_static_table_is_rfc_7541s() {
        assert_eq!(STATIC[0], (":authority", ""));
        assert_eq!(STATIC[7], (":status", "200"));
        assert_eq!(STATIC[60], ("www-authenticate", ""));
        assert_eq!(STATIC[57], ("user-agent", ""));
    }
}
