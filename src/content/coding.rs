//! Content codings (RFC 9110 8.4.1) and their negotiation from `Accept-Encoding`
//! (RFC 9110 12.5.3): each coding a route offers gets the client's quality value for it
//! (its own entry, else the `*` entry, else none); the highest non-zero wins, ties going
//! to the route's order of preference. No entry acceptable: identity, the body as is.
//!
//! Parsing reads the header values in place, without allocating.

/// A content coding Fulcrum can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// gzip (RFC 1952), every client's.
    Gzip,
    /// Brotli (RFC 7932): smaller text, browsers over HTTPS and most over HTTP.
    Br,
    /// Zstandard (RFC 8878): fast, in current browsers.
    Zstd,
}

impl Coding {
    /// Every coding, in the default order of preference.
    pub const ALL: [Coding; 3] = [Coding::Zstd, Coding::Br, Coding::Gzip];

    /// Its token in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
        }
    }

    /// The coding a token names (`x-gzip` is gzip), if Fulcrum has it.
    pub fn from_token(token: &str) -> Option<Coding> {
        Coding::ALL.into_iter().find(|c| {
            token.eq_ignore_ascii_case(c.token())
                || (*c == Coding::Gzip && token.eq_ignore_ascii_case("x-gzip"))
        })
    }
}

/// The coding to use for a client that sent `accept` (every `Accept-Encoding` value, in
/// order), among `offered` (in the route's order of preference); `None`: identity.
pub fn negotiate<'a>(accept: impl Iterator<Item = &'a [u8]>, offered: &[Coding]) -> Option<Coding> {
    // Quality (thousandths) per offered coding, and of `*`; u16::MAX: not mentioned.
    let mut quality = [u16::MAX; 3];
    let mut star = u16::MAX;
    for value in accept {
        for item in value.split(|&b| b == b',') {
            let mut parts = item.split(|&b| b == b';');
            let token = trim(parts.next().unwrap_or_default());
            if token.is_empty() {
                continue;
            }
            let mut q = 1000;
            for param in parts {
                let param = trim(param);
                if let Some(v) = param
                    .strip_prefix(b"q=")
                    .or_else(|| param.strip_prefix(b"Q="))
                {
                    q = parse_quality(v).unwrap_or(0);
                }
            }
            if token == b"*" {
                star = q;
                continue;
            }
            let Ok(token) = std::str::from_utf8(token) else {
                continue;
            };
            if let Some(c) = Coding::from_token(token) {
                quality[index(c)] = q;
            }
        }
    }
    let mut best: Option<(Coding, u16)> = None;
    for &c in offered {
        let q = match quality[index(c)] {
            u16::MAX if star == u16::MAX => 0,
            u16::MAX => star,
            q => q,
        };
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((c, q));
        }
    }
    best.map(|(c, _)| c)
}

fn index(c: Coding) -> usize {
    match c {
        Coding::Gzip => 0,
        Coding::Br => 1,
        Coding::Zstd => 2,
    }
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// A quality value (`0`, `0.5`, `1.000`) in thousandths.
fn parse_quality(v: &[u8]) -> Option<u16> {
    let (whole, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(accept: &str) -> Option<Coding> {
        negotiate(std::iter::once(accept.as_bytes()), &Coding::ALL)
    }

    #[test]
    fn browsers_get_the_preferred_coding() {
        // Chromium's header: every coding at q=1, the route's order decides.
        assert_eq!(pick("gzip, deflate, br, zstd"), Some(Coding::Zstd));
        assert_eq!(pick("gzip, deflate, br"), Some(Coding::Br));
        assert_eq!(pick("gzip, deflate"), Some(Coding::Gzip));
        assert_eq!(
            negotiate(
                std::iter::once(&b"gzip, br, zstd"[..]),
                &[Coding::Zstd, Coding::Gzip]
            ),
            Some(Coding::Zstd)
        );
    }

    #[test]
    fn quality_values_are_honoured() {
        assert_eq!(pick("br;q=0.5, gzip;q=0.8"), Some(Coding::Gzip));
        assert_eq!(pick("br;q=0, gzip"), Some(Coding::Gzip));
        assert_eq!(pick("gzip;q=1.000, br;q=0.999"), Some(Coding::Gzip));
        assert_eq!(pick("gzip ; q=0.001"), Some(Coding::Gzip));
        assert_eq!(pick("x-gzip"), Some(Coding::Gzip));
        assert_eq!(pick("GZIP"), Some(Coding::Gzip));
    }

    #[test]
    fn identity_when_nothing_fits() {
        assert_eq!(pick(""), None);
        assert_eq!(pick("identity"), None);
        assert_eq!(pick("deflate, compress"), None);
        assert_eq!(pick("gzip;q=0, br;q=0.0, zstd;q=0.000"), None);
        assert_eq!(pick("*;q=0"), None);
        // Bad quality values count as 0.
        assert_eq!(pick("gzip;q=2, br;q=0.5555, zstd;q=x"), None);
        assert_eq!(negotiate(std::iter::empty(), &Coding::ALL), None);
    }

    #[test]
    fn star_covers_codings_not_named() {
        assert_eq!(pick("*"), Some(Coding::Zstd));
        assert_eq!(pick("zstd;q=0, *;q=0.5"), Some(Coding::Br));
        assert_eq!(pick("gzip;q=0.2, *;q=0.1"), Some(Coding::Gzip));
    }

    #[test]
    fn several_header_lines_combine() {
        let lines: [&[u8]; 2] = [b"br;q=0", b"gzip"];
        assert_eq!(
            negotiate(lines.into_iter(), &Coding::ALL),
            Some(Coding::Gzip)
        );
    }
}
