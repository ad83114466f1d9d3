//! From a request path to a file under the root, refusing every way out of it: the path
//! is percent-decoded once; a NUL byte, a bad escape or a `..` segment (written or
//! encoded) is a bad request; `.` and empty segments are skipped; hidden segments
//! (`.name`, but `.well-known`) are not served unless allowed.
//!
//! The file is then opened relative to the root's directory with `openat2(2)` and
//! `RESOLVE_BENEATH`: the kernel walks the path in one call and refuses any symlink that
//! leads out of the root (and absolute ones). On kernels without `openat2` (before 5.6)
//! the path is resolved with `realpath` and must still be under the root's own.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why a path is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Malformed: a bad escape, NUL, `..` (400).
    Bad,
    /// Not there, hidden, or outside the root (404).
    NotFound,
}

/// The decoded request path as a path relative to the root (segments joined by `/`,
/// empty for the root itself), and whether the path ended with `/`.
pub fn relative(raw: &[u8], hidden: bool) -> Result<(Vec<u8>, bool), Refused> {
    let decoded = percent_decode(raw).ok_or(Refused::Bad)?;
    if decoded.contains(&0) {
        return Err(Refused::Bad);
    }
    let mut out = Vec::with_capacity(decoded.len());
    for segment in decoded.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => return Err(Refused::Bad),
            s if s.starts_with(b".") && !hidden && s != b".well-known" => {
                return Err(Refused::NotFound);
            }
            s => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(s);
            }
        }
    }
    Ok((out, decoded.ends_with(b"/")))
}

/// A served directory, kept open: files are opened beneath it.
#[derive(Debug)]
pub struct Root {
    /// Its resolved path.
    pub path: PathBuf,
    dir: Option<OwnedFd>,
}

impl Root {
    /// Opens `path` (already resolved).
    pub fn new(path: &Path) -> Root {
        let dir = CString::new(path.as_os_str().as_bytes())
            .ok()
            .and_then(|c| {
                // SAFETY: a valid C string; the descriptor returned is owned here.
                let fd = unsafe {
                    libc::open(
                        c.as_ptr(),
                        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                    )
                };
                (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
            });
        Root {
            path: path.to_path_buf(),
            dir,
        }
    }

    /// Opens `rel` (from [`relative`]; empty: the root) for reading, if it is beneath
    /// the root once every symlink is followed.
    pub fn open(&self, rel: &[u8]) -> Result<File, Refused> {
        let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
        let c = CString::new(rel).map_err(|_| Refused::Bad)?;
        if let Some(dir) = &self.dir {
            let how = OpenHow {
                flags: (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
                mode: 0,
                resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
            };
            // SAFETY: valid descriptor, C string and `open_how` for the call.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    dir.as_raw_fd(),
                    c.as_ptr(),
                    &how as *const OpenHow,
                    std::mem::size_of::<OpenHow>(),
                )
            };
            if fd >= 0 {
                // SAFETY: a new descriptor, owned by the file.
                return Ok(unsafe { File::from_raw_fd(fd as i32) });
            }
            if io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS) {
                return Err(Refused::NotFound);
            }
        }
        // No openat2: resolve, then check.
        let joined = self.path.join(std::ffi::OsStr::from_bytes(rel));
        let real = joined.canonicalize().map_err(|_| Refused::NotFound)?;
        if !real.starts_with(&self.path) {
            return Err(Refused::NotFound);
        }
        File::open(real).map_err(|_| Refused::NotFound)
    }
}

/// `struct open_how` of `openat2(2)`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
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
        relative(raw.as_bytes(), false).map(|(p, _)| String::from_utf8(p).unwrap())
    }

    #[test]
    fn segments_join_under_the_root() {
        assert_eq!(joined("/a/b.css").unwrap(), "a/b.css");
        assert_eq!(joined("//a/./b%20c.css").unwrap(), "a/b c.css");
        assert_eq!(joined("/.well-known/x").unwrap(), ".well-known/x");
        assert_eq!(joined("/").unwrap(), "");
        assert!(relative(b"/a/", false).unwrap().1);
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
        assert!(relative(b"/.env", true).is_ok());
    }
}
