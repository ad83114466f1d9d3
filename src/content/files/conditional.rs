//! Validators and conditional requests for files (RFC 9110 8.8, 13 and 14): the entity
//! tag (`"MTIME-SIZE"` in hexadecimal, as NGINX writes it) and `Last-Modified`; the
//! preconditions in the RFC's order (`If-Match`, `If-Unmodified-Since`, `If-None-Match`,
//! `If-Modified-Since`); and byte ranges with `If-Range`.

/// What the preconditions say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Go on.
    Pass,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// The request headers that matter.
#[derive(Debug, Default, Clone, Copy)]
pub struct Conditions<'a> {
    pub if_match: Option<&'a [u8]>,
    pub if_none_match: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
    pub if_unmodified_since: Option<&'a [u8]>,
    pub if_range: Option<&'a [u8]>,
    pub range: Option<&'a [u8]>,
}

/// Evaluates the preconditions against a file's `etag` and `modified` (Unix seconds).
pub fn evaluate(c: &Conditions<'_>, etag: &str, modified: u64) -> Precondition {
    if let Some(v) = c.if_match {
        if !matches_any(v, etag, true) {
            return Precondition::Failed;
        }
    } else if let Some(since) = c.if_unmodified_since.and_then(parse_date)
        && modified > since
    {
        return Precondition::Failed;
    }
    if let Some(v) = c.if_none_match {
        if matches_any(v, etag, false) {
            return Precondition::NotModified;
        }
    } else if let Some(since) = c.if_modified_since.and_then(parse_date)
        && modified <= since
    {
        return Precondition::NotModified;
    }
    Precondition::Pass
}

/// Whether the `Range` applies: no `If-Range`, or one that names this very version
/// (a strong tag equal to `etag`, or exactly its date).
pub fn range_applies(c: &Conditions<'_>, etag: &str, modified: u64) -> bool {
    match c.if_range {
        None => true,
        Some(v) => {
            let v = v.trim_ascii();
            if v.starts_with(b"\"") {
                v == etag.as_bytes()
            } else {
                parse_date(v) == Some(modified)
            }
        }
    }
}

fn matches_any(list: &[u8], etag: &str, strong: bool) -> bool {
    let own = etag.as_bytes();
    list.split(|&b| b == b',').any(|t| {
        let t = t.trim_ascii();
        if t == b"*" {
            return true;
        }
        match t.strip_prefix(b"W/") {
            Some(weak) => !strong && weak == own,
            None => t == own,
        }
    })
}

/// A file's entity tag.
pub fn etag(modified: u64, size: u64) -> String {
    format!("\"{modified:x}-{size:x}\"")
}

/// Why a `Range` header was not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranges {
    /// No usable range: the whole file (no header, another unit, a syntax error, too
    /// many ranges).
    Whole,
    /// The satisfiable ranges: (first byte, length).
    Some(Vec<(u64, u64)>),
    /// None satisfiable: 416.
    Unsatisfiable,
}

/// At most this many ranges in one request (more is answered with the whole file).
const MAX_RANGES: usize = 16;

/// The byte ranges of `header` in a file of `size` bytes.
pub fn ranges(header: &[u8], size: u64) -> Ranges {
    let Some(specs) = header.trim_ascii().strip_prefix(b"bytes=") else {
        return Ranges::Whole;
    };
    let mut out = Vec::new();
    let mut count = 0;
    for spec in specs.split(|&b| b == b',') {
        let spec = spec.trim_ascii();
        if spec.is_empty() {
            continue;
        }
        count += 1;
        if count > MAX_RANGES {
            return Ranges::Whole;
        }
        let Some(dash) = spec.iter().position(|&b| b == b'-') else {
            return Ranges::Whole;
        };
        let (first, last) = (&spec[..dash], &spec[dash + 1..]);
        let range = match (number(first), number(last)) {
            (Some(a), Some(b)) if a <= b => (a < size).then(|| (a, b.min(size - 1) - a + 1)),
            (Some(a), None) if last.is_empty() => (a < size).then(|| (a, size - a)),
            (None, Some(n)) if first.is_empty() => {
                (n > 0 && size > 0).then(|| (size - n.min(size), n.min(size)))
            }
            _ => return Ranges::Whole,
        };
        out.extend(range);
    }
    if count == 0 {
        Ranges::Whole
    } else if out.is_empty() {
        Ranges::Unsatisfiable
    } else {
        Ranges::Some(out)
    }
}

fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `secs` (Unix time) as an HTTP date: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(secs: u64) -> String {
    let days = secs / 86_400;
    let rest = secs % 86_400;
    let (y, m, d) = civil(days as i64);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// An IMF-fixdate as Unix seconds (other formats: `None`, the condition is ignored).
pub fn parse_date(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let mut parts = s.split_whitespace();
    let _day = parts.next()?;
    let d: u32 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let m = MONTHS.iter().position(|x| *x == month)? as u32 + 1;
    let y: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let (h, mi, se): (u64, u64, u64) = (
        hms.next()?.parse().ok()?,
        hms.next()?.parse().ok()?,
        hms.next()?.parse().ok()?,
    );
    if parts.next()? != "GMT" || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    u64::try_from(days)
        .ok()
        .map(|days| days * 86_400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            parse_date(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        for t in [0, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_date(http_date(t).as_bytes()), Some(t));
        }
        assert_eq!(parse_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), None);
    }

    const LATER: &[u8] = b"Thu, 01 Jan 1970 00:20:00 GMT";
    const EARLIER: &[u8] = b"Thu, 01 Jan 1970 00:10:00 GMT";

    #[test]
    fn preconditions_in_the_rfc_order() {
        let tag = etag(1000, 42);
        let c = |f: fn(&mut Conditions<'static>)| {
            let mut c = Conditions::default();
            f(&mut c);
            evaluate(&c, &tag, 1000)
        };
        assert_eq!(c(|_| {}), Precondition::Pass);
        assert_eq!(
            c(|c| c.if_none_match = Some(b"\"3e8-2a\"")),
            Precondition::NotModified
        );
        assert_eq!(
            c(|c| c.if_none_match = Some(b"\"x\", W/\"3e8-2a\"")),
            Precondition::NotModified
        );
        assert_eq!(c(|c| c.if_none_match = Some(b"\"x\"")), Precondition::Pass);
        assert_eq!(c(|c| c.if_match = Some(b"\"x\"")), Precondition::Failed);
        assert_eq!(
            c(|c| c.if_match = Some(b"W/\"3e8-2a\"")),
            Precondition::Failed
        );
        assert_eq!(c(|c| c.if_match = Some(b"*")), Precondition::Pass);
        assert_eq!(
            c(|c| c.if_modified_since = Some(LATER)),
            Precondition::NotModified
        );
        assert_eq!(
            c(|c| c.if_modified_since = Some(EARLIER)),
            Precondition::Pass
        );
        assert_eq!(
            c(|c| c.if_unmodified_since = Some(EARLIER)),
            Precondition::Failed
        );
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            c(|c| {
                c.if_none_match = Some(b"\"x\"");
                c.if_modified_since = Some(LATER);
            }),
            Precondition::Pass
        );
    }

    #[test]
    fn byte_ranges() {
        assert_eq!(ranges(b"bytes=0-9", 100), Ranges::Some(vec![(0, 10)]));
        assert_eq!(ranges(b"bytes=90-", 100), Ranges::Some(vec![(90, 10)]));
        assert_eq!(ranges(b"bytes=-10", 100), Ranges::Some(vec![(90, 10)]));
        assert_eq!(ranges(b"bytes=-500", 100), Ranges::Some(vec![(0, 100)]));
        assert_eq!(ranges(b"bytes=50-500", 100), Ranges::Some(vec![(50, 50)]));
        assert_eq!(
            ranges(b"bytes=0-0, 99-", 100),
            Ranges::Some(vec![(0, 1), (99, 1)])
        );
        assert_eq!(ranges(b"bytes=100-", 100), Ranges::Unsatisfiable);
        assert_eq!(ranges(b"bytes=-0", 100), Ranges::Unsatisfiable);
        assert_eq!(ranges(b"bytes=5-1", 100), Ranges::Whole);
        assert_eq!(ranges(b"items=0-1", 100), Ranges::Whole);
        assert_eq!(ranges(b"bytes=x-1", 100), Ranges::Whole);
        let many = format!("bytes={}", vec!["0-0"; 17].join(","));
        assert_eq!(ranges(many.as_bytes(), 100), Ranges::Whole);
        assert_eq!(ranges(b"bytes=0-", 0), Ranges::Unsatisfiable);
    }

    #[test]
    fn if_range_names_a_version() {
        let tag = etag(1000, 42);
        let mut c = Conditions::default();
        assert!(range_applies(&c, &tag, 1000));
        c.if_range = Some(b"\"3e8-2a\"");
        assert!(range_applies(&c, &tag, 1000));
        c.if_range = Some(b"\"old\"");
        assert!(!range_applies(&c, &tag, 1000));
        c.if_range = Some(b"Thu, 01 Jan 1970 00:16:40 GMT");
        assert!(range_applies(&c, &tag, 1000));
    }
}
