//! A directory's listing (`listing = true`, NGINX's `autoindex`): a plain HTML page of
//! its entries, directories first, names escaped; hidden entries left out unless
//! hidden files are served.

use std::path::Path;

use super::{FileAnswer, Piece};

/// The listing of `dir`, shown as `url` (the request path).
pub fn answer(dir: &Path, url: &[u8], hidden: bool) -> FileAnswer {
    let mut entries: Vec<(bool, String)> = match std::fs::read_dir(dir) {
        Ok(read) => read
            .filter_map(|e| {
                let e = e.ok()?;
                let name = e.file_name().into_string().ok()?;
                if name.starts_with('.') && !hidden {
                    return None;
                }
                let is_dir = e.file_type().ok()?.is_dir();
                Some((!is_dir, name))
            })
            .collect(),
        Err(_) => return FileAnswer::status(403, "403 Forbidden"),
    };
    entries.sort();
    let title = escape(&String::from_utf8_lossy(url));
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n<body><h1>Index of {title}</h1><ul>\n<li><a href=\"../\">../</a></li>\n"
    );
    for (is_file, name) in entries {
        let slash = if is_file { "" } else { "/" };
        html.push_str(&format!(
            "<li><a href=\"{}{slash}\">{}{slash}</a></li>\n",
            href(&name),
            escape(&name)
        ));
    }
    html.push_str("</ul></body></html>\n");
    let body = html.into_bytes();
    FileAnswer {
        status: 200,
        headers: vec![("Content-Type", "text/html; charset=utf-8".into())],
        file: None,
        length: Some(body.len() as u64),
        body: vec![Piece::Bytes(body)],
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A name as a relative link: percent-encoded but for unreserved characters.
fn href(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped() {
        assert_eq!(escape("<a href=\"x\">"), "&lt;a href=&quot;x&quot;&gt;");
        assert_eq!(href("a b?.txt"), "a%20b%3F.txt");
    }
}
