//! Static files: a route that serves a directory instead of a pool (`files = { root =
//! ... }`), as NGINX's `root` with `index`, `gzip_static` and `autoindex`. The answer is
//! decided here, once, for both engines: the file under the root ([`path`]), its type
//! ([`mime`]), validators and conditional requests, byte ranges (one, or several as
//! `multipart/byteranges`) ([`conditional`]), index files, precompressed `.br`/`.zst`/
//! `.gz` siblings and the optional listing ([`listing`]). The engines then send the
//! [`FileAnswer`]: the HTTP/1.1 engine with `sendfile(2)` on plain TCP, the HTTP/2 path
//! (and TLS) by reading the file in pieces.
//!
//! Only GET and HEAD are served (405 otherwise). A directory asked without its final `/`
//! is redirected to it (301); a directory without an index file is 403 unless listing is
//! on; a path that leaves the root, hidden or missing files are 404; a malformed path
//! (bad escape, NUL, `..`) is 400.

pub mod conditional;
pub mod listing;
pub mod mime;
pub mod path;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use conditional::{Conditions, Precondition, Ranges};

use super::coding::{self, Coding};
use crate::routing::RequestView;

/// A route's `files` settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesConfig {
    /// The directory served (resolved: no symlink in it).
    pub root: PathBuf,
    /// File names tried, in order, for a directory.
    pub index: Vec<String>,
    /// List a directory without an index file.
    pub listing: bool,
    /// Serve `NAME.br`, `NAME.zst` or `NAME.gz` to clients that take them.
    pub precompressed: bool,
    /// Serve hidden files (names starting with `.`; `.well-known` always is).
    pub hidden: bool,
    /// A `Cache-Control` value for the files served.
    pub cache_control: Option<String>,
}

/// One part of a file answer's body.
#[derive(Debug)]
pub enum Piece {
    /// These bytes (a multipart part's head, a listing).
    Bytes(Vec<u8>),
    /// This many bytes of the file from this offset.
    File(u64, u64),
}

/// What a file route answers, for an engine to write.
#[derive(Debug)]
pub struct FileAnswer {
    /// The status.
    pub status: u16,
    /// Headers other than `Content-Length` and the connection's.
    pub headers: Vec<(&'static str, String)>,
    /// The file the pieces read from, if any.
    pub file: Option<File>,
    /// The body (sent unless the request is a HEAD).
    pub body: Vec<Piece>,
    /// Its length (`Content-Length`; `None` for a 304, which has none).
    pub length: Option<u64>,
}

impl FileAnswer {
    fn status(status: u16, text: &str) -> FileAnswer {
        let body = format!("{text}\n").into_bytes();
        FileAnswer {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
            file: None,
            length: Some(body.len() as u64),
            body: vec![Piece::Bytes(body)],
        }
    }
}

/// The precompressed siblings, in order of preference, and their suffixes.
const SIBLINGS: [(Coding, &str); 3] = [
    (Coding::Br, "br"),
    (Coding::Zstd, "zst"),
    (Coding::Gzip, "gz"),
];

/// A `files` route's settings with its root directory kept open.
#[derive(Debug)]
pub struct Files {
    /// The settings.
    pub config: FilesConfig,
    root: path::Root,
}

impl Files {
    /// Opens the root of `config`.
    pub fn new(config: &FilesConfig) -> Files {
        Files {
            root: path::Root::new(&config.root),
            config: config.clone(),
        }
    }
}

/// `rel` followed by `suffix` (a sibling's extension) or by `/name` (an index file).
fn with(rel: &[u8], sep: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rel.len() + sep.len() + name.len());
    out.extend_from_slice(rel);
    if !rel.is_empty() {
        out.extend_from_slice(sep);
    }
    out.extend_from_slice(name);
    out
}

/// Answers `req` from `files` (`strip`: the route's prefix removed from the path).
pub fn answer<V: RequestView + ?Sized>(files: &Files, strip: Option<&[u8]>, req: &V) -> FileAnswer {
    let config = &files.config;
    let method = req.method();
    let is_head = method == b"HEAD";
    if method != b"GET" && !is_head {
        let mut a = FileAnswer::status(
            405,
            "405 Method Not Allowed: files are read with GET or HEAD",
        );
        a.headers.push(("Allow", "GET, HEAD".into()));
        return a;
    }
    let full = req.path();
    let path = strip.and_then(|p| full.strip_prefix(p)).unwrap_or(full);
    let (mut rel, slash) = match path::relative(path, config.hidden) {
        Ok(r) => r,
        Err(path::Refused::Bad) => return FileAnswer::status(400, "400 Bad Request: invalid path"),
        Err(path::Refused::NotFound) => return not_found(),
    };
    let Ok(mut file) = files.root.open(&rel) else {
        return not_found();
    };
    let Ok(mut meta) = file.metadata() else {
        return not_found();
    };
    if meta.is_dir() {
        if !slash {
            let mut location = String::from_utf8_lossy(full).into_owned();
            location.push('/');
            if let Some(q) = req.query() {
                location.push('?');
                location.push_str(&String::from_utf8_lossy(q));
            }
            let mut a = FileAnswer::status(301, "301 Moved Permanently");
            a.headers.push(("Location", location));
            return a;
        }
        let index = config.index.iter().find_map(|name| {
            let candidate = with(&rel, b"/", name.as_bytes());
            let f = files.root.open(&candidate).ok()?;
            let m = f.metadata().ok().filter(|m| m.is_file())?;
            Some((candidate, f, m))
        });
        match index {
            Some((candidate, f, m)) => {
                rel = candidate;
                file = f;
                meta = m;
            }
            None if config.listing => {
                use std::os::unix::ffi::OsStrExt;
                let dir = files.root.path.join(std::ffi::OsStr::from_bytes(&rel));
                return listing::answer(&dir, full, config.hidden);
            }
            None => return FileAnswer::status(403, "403 Forbidden: no index file"),
        }
    }
    if !meta.is_file() {
        return not_found();
    }
    let name = rel.rsplit(|&b| b == b'/').next().unwrap_or_default();
    let content_type = mime::content_type(name);
    let mut encoding = None;
    if config.precompressed {
        let accept: Vec<&[u8]> = req.header_values("accept-encoding").collect();
        for (c, suffix) in SIBLINGS {
            if coding::negotiate(accept.iter().copied(), &[c]).is_none() {
                continue;
            }
            let mut sibling = rel.clone();
            sibling.push(b'.');
            sibling.extend_from_slice(suffix.as_bytes());
            if let Ok(f) = files.root.open(&sibling)
                && let Ok(m) = f.metadata()
                && m.is_file()
            {
                encoding = Some(c);
                file = f;
                meta = m;
                break;
            }
        }
    }
    let size = meta.len();
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let etag = match encoding {
        // Each representation has its own tag.
        Some(c) => format!("\"{}-{modified:x}-{size:x}\"", c.token()),
        None => conditional::etag(modified, size),
    };
    let mut headers: Vec<(&'static str, String)> = Vec::with_capacity(8);
    headers.push(("ETag", etag.clone()));
    headers.push(("Last-Modified", conditional::http_date(modified)));
    if let Some(cc) = &config.cache_control {
        headers.push(("Cache-Control", cc.clone()));
    }
    if config.precompressed {
        headers.push(("Vary", "Accept-Encoding".into()));
    }
    let header = |name: &'static str| req.header_values(name).next();
    let conditions = Conditions {
        if_match: header("if-match"),
        if_none_match: header("if-none-match"),
        if_modified_since: header("if-modified-since"),
        if_unmodified_since: header("if-unmodified-since"),
        if_range: header("if-range"),
        range: header("range"),
    };
    match conditional::evaluate(&conditions, &etag, modified) {
        Precondition::Pass => {}
        Precondition::NotModified => {
            return FileAnswer {
                status: 304,
                headers,
                file: None,
                body: Vec::new(),
                length: None,
            };
        }
        Precondition::Failed => {
            let mut a = FileAnswer::status(412, "412 Precondition Failed");
            a.headers.extend(headers);
            return a;
        }
    }
    if let Some(c) = encoding {
        headers.push(("Content-Encoding", c.token().into()));
    }
    headers.push(("Accept-Ranges", "bytes".into()));
    let ranges = match conditions.range {
        Some(r) if conditional::range_applies(&conditions, &etag, modified) => {
            conditional::ranges(r, size)
        }
        _ => Ranges::Whole,
    };
    let (status, body, length) = match ranges {
        Ranges::Whole => {
            headers.push(("Content-Type", content_type.into()));
            (200, vec![Piece::File(0, size)], size)
        }
        Ranges::Unsatisfiable => {
            let mut a = FileAnswer::status(416, "416 Range Not Satisfiable");
            a.headers.push(("Content-Range", format!("bytes */{size}")));
            return a;
        }
        Ranges::Some(r) if r.len() == 1 => {
            let (start, len) = r[0];
            headers.push(("Content-Type", content_type.into()));
            headers.push((
                "Content-Range",
                format!("bytes {start}-{}/{size}", start + len - 1),
            ));
            (206, vec![Piece::File(start, len)], len)
        }
        Ranges::Some(r) => multipart(&r, size, content_type, &mut headers),
    };
    FileAnswer {
        status,
        headers,
        file: Some(file),
        body,
        length: Some(length),
    }
}

/// The body of a `multipart/byteranges` answer to several ranges, and its length.
fn multipart(
    ranges: &[(u64, u64)],
    size: u64,
    content_type: &str,
    headers: &mut Vec<(&'static str, String)>,
) -> (u16, Vec<Piece>, u64) {
    let boundary = format!("{:016x}", fastrand::u64(..));
    headers.push((
        "Content-Type",
        format!("multipart/byteranges; boundary={boundary}"),
    ));
    let mut body = Vec::with_capacity(ranges.len() * 2 + 1);
    let mut length = 0;
    for &(start, len) in ranges {
        let head = format!(
            "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {start}-{}/{size}\r\n\r\n",
            start + len - 1
        );
        length += head.len() as u64 + len;
        body.push(Piece::Bytes(head.into_bytes()));
        body.push(Piece::File(start, len));
    }
    let end = format!("\r\n--{boundary}--\r\n");
    length += end.len() as u64;
    body.push(Piece::Bytes(end.into_bytes()));
    (206, body, length)
}

fn not_found() -> FileAnswer {
    FileAnswer::status(404, "404 Not Found")
}

/// Checks a `files.root` at load: it must be a directory; gives its resolved path.
pub fn check_root(root: &Path) -> Result<PathBuf, String> {
    let real = root
        .canonicalize()
        .map_err(|e| format!("`{}` cannot be served: {e}", root.display()))?;
    if !real.is_dir() {
        return Err(format!("`{}` is not a directory", root.display()));
    }
    Ok(real)
}
