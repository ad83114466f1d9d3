//! From a request path to a file under the root, refusing every way out of it: the path
//! is percent-decoded once; a NUL byte, a bad escape or a `..` segment (written or
//! encoded) is a bad request; `.` and empty segments are skipped; hidden segments
//! (`.name`, but `.well-known`) are not served unless allowed. The joined path is then
//! resolved by the file system (symlinks followed) and must still be under the root's
//! own resolved path: a symlink that leads out of the root is not served.

use std::path::{Path, PathBuf};

/// Why a path is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Malformed: a bad escape, NUL, `..` (400).
    Bad,
    /// Not there, hidden, or outside the root (404).
    NotFound,
}

/// The decoded request path's segments joined under `root` (not yet resolved), and
/// whether the path ended with `/`.
pub fn join(root: &Path, raw: &[u8], hidden: bool) -> Result<(PathBuf, bool), Refused> {
    let decoded = percent_decode(raw).ok_or(Refused::Bad)?;
    if decoded.contains(&0) {
        return Err(Refused::Bad);
    }
    let mut out = root.to_path_buf();
    for segment in decoded.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => return Err(Refused::Bad),
            s if s.starts_with(b".") && !hidden && s != b".well-known" => {
                return Err(Refused::NotFound);
            }
            s => {
                use std::os::unix::ffi::OsStrExt;
                out.push(std::ffi::OsStr::from_bytes(s));
            }
        }
    }
    Ok((out, decoded.ends_with(b"/")))
}

/// `path` resolved (symlinks followed), if it exists and is under `root` (itself
/// resolved).
pub fn resolve(root: &Path, path: &Path) -> Result<PathBuf, Refused> {
    let real = path.canonicalize().map_err(|_| Refused::NotFound)?;
    if real.starts_with(root) {
        Ok(real)
    } else {
        Err(Refused::NotFound)
    }
}

/// `%XX` escapes decoded; `None` for a bad escape.
fn percent_decode(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            let value = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(value);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(raw: &str) -> Result<String, Refused> {
        join(Path::new("/srv"), raw.as_bytes(), false).map(|(p, _)| p.display().to_string())
    }

    #[test]
    fn segments_join_under_the_root() {
        assert_eq!(joined("/a/b.css").unwrap(), "/srv/a/b.css");
        assert_eq!(joined("//a/./b%20c.css").unwrap(), "/srv/a/b c.css");
        assert_eq!(joined("/.well-known/x").unwrap(), "/srv/.well-known/x");
        assert!(join(Path::new("/srv"), b"/a/", false).unwrap().1);
    }

    #[test]
    fn every_way_out_is_refused() {
        for bad in [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc%2Fpasswd",
            "/a/..%2f..%2fetc",
            "/a%00.html",
            "/a%zz",
            "/a%2",
        ] {
            assert_eq!(joined(bad), Err(Refused::Bad), "{bad}");
        }
        assert_eq!(joined("/.git/config"), Err(Refused::NotFound));
        assert_eq!(joined("/a/.env"), Err(Refused::NotFound));
        assert!(join(Path::new("/srv"), b"/.env", true).is_ok());
    }
}
