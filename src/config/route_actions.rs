//! Checks of the parts of a route that say what Fulcrum answers or changes: `redirect`,
//! `respond`, and the `request_headers` / `response_headers` rules.

use toml::Spanned;

use super::error::Problems;
use super::routes::Redirect;
use super::routes::{
    FixedResponse, HeaderRules, RawHeaderRules, RawRedirect, RawRespond, RawRoute,
};

/// Headers that the rules may not touch: Fulcrum frames every message itself.
const FRAMING: &[&str] = &["content-length", "transfer-encoding", "connection", "host"];

pub(super) fn redirect(
    raw: &Spanned<RawRedirect>,
    route: &RawRoute,
    name: &str,
    problems: &mut Problems<'_>,
) -> Option<Redirect> {
    let r = raw.get_ref();
    let status = match r.status.as_ref().map(|s| *s.get_ref()) {
        None => 302,
        Some(s @ (301 | 302 | 303 | 307 | 308)) => s as u16,
        Some(s) => {
            problems.add(
                r.status.as_ref().map_or(raw.span(), |s| s.span()),
                format!("redirect status {s} is not a redirect"),
                Some("use 301, 302, 303, 307 or 308 (307/308 keep the method and body)".into()),
            );
            return None;
        }
    };
    let parts = [&r.scheme, &r.host, &r.path, &r.prefix];
    if r.location.is_some()
        && (parts.iter().any(|p| p.is_some()) || r.port.is_some() || r.drop_query)
    {
        problems.add(
            raw.span(),
            format!("route `{name}`: `location` is a whole URL; it cannot be combined with scheme, host, port, path, prefix or drop_query"),
            Some("use `location` alone, or the parts alone".into()),
        );
        return None;
    }
    if r.location.is_none() && parts.iter().all(|p| p.is_none()) && r.port.is_none() {
        problems.add(
            raw.span(),
            format!("route `{name}` redirects to where the request already is"),
            Some(
                "set `scheme = \"https\"`, `host`, `port`, `path`, `prefix` or a whole `location`"
                    .into(),
            ),
        );
        return None;
    }
    if let Some(scheme) = &r.scheme
        && scheme != "http"
        && scheme != "https"
    {
        problems.add(
            raw.span(),
            format!("redirect scheme `{scheme}`"),
            Some("use \"https\" or \"http\"".into()),
        );
        return None;
    }
    if r.path.is_some() && r.prefix.is_some() {
        problems.add(
            raw.span(),
            "a redirect with both `path` and `prefix`",
            Some(
                "`path` replaces the whole path, `prefix` only the matched path_prefix: use one"
                    .into(),
            ),
        );
        return None;
    }
    if r.prefix.is_some() && route.path_prefix.is_none() {
        problems.add(
            raw.span(),
            "redirect `prefix` replaces the matched `path_prefix`, and this route has none",
            Some("add path_prefix = \"/old/\", or use `path`".into()),
        );
        return None;
    }
    let bad_text = [&r.location, &r.host, &r.path, &r.prefix]
        .into_iter()
        .flatten()
        .find(|t| t.bytes().any(|b| b.is_ascii_control() || b == b' '));
    if let Some(t) = bad_text {
        problems.add(
            raw.span(),
            format!("redirect part {t:?} has spaces or control characters"),
            Some("percent-encode them (%20)".into()),
        );
        return None;
    }
    Some(Redirect {
        status,
        location: r.location.clone(),
        scheme: r.scheme.clone(),
        host: r.host.clone(),
        port: r.port,
        path: r.path.clone(),
        prefix: r.prefix.clone(),
        drop_query: r.drop_query,
    })
}

pub(super) fn respond(
    raw: &Spanned<RawRespond>,
    problems: &mut Problems<'_>,
) -> Option<FixedResponse> {
    let r = raw.get_ref();
    let status = match r.status.as_ref().map(|s| *s.get_ref()) {
        None => 200,
        Some(s @ 200..=599) if !(300..400).contains(&s) || s == 304 => s as u16,
        Some(s) => {
            problems.add(
                r.status.as_ref().map_or(raw.span(), |s| s.span()),
                format!("`respond` status {s}"),
                Some("use a status from 200 to 599; for 3xx use `redirect`".into()),
            );
            return None;
        }
    };
    let content_type = r
        .content_type
        .clone()
        .unwrap_or_else(|| "text/plain; charset=utf-8".into());
    if !valid_value(&content_type) {
        problems.add(raw.span(), "bad `content_type`", None);
        return None;
    }
    Some(FixedResponse {
        status,
        body: r.body.clone().unwrap_or_default(),
        content_type,
    })
}

pub(super) fn header_rules(
    raw: Option<&Spanned<RawHeaderRules>>,
    route: &str,
    problems: &mut Problems<'_>,
) -> HeaderRules {
    let Some(raw) = raw else {
        return HeaderRules::default();
    };
    let mut rules = HeaderRules::default();
    let check_name = |name: &str, problems: &mut Problems<'_>| -> Option<String> {
        let lower = name.trim().to_ascii_lowercase();
        if lower.is_empty() || !lower.bytes().all(super::is_token_byte) {
            problems.add(
                raw.span(),
                format!("route `{route}`: bad header name `{name}`"),
                None,
            );
            return None;
        }
        if FRAMING.contains(&lower.as_str()) {
            problems.add(
                raw.span(),
                format!("route `{route}`: `{lower}` is set by Fulcrum itself and cannot be changed by a rule"),
                Some("framing and Host follow the request; route on the host instead of rewriting it".into()),
            );
            return None;
        }
        Some(lower)
    };
    for name in &raw.get_ref().remove {
        if let Some(n) = check_name(name, problems) {
            rules.remove.push(n);
        }
    }
    for (list, out) in [
        (&raw.get_ref().set, &mut rules.set),
        (&raw.get_ref().add, &mut rules.add),
    ] {
        for (name, value) in list {
            let Some(n) = check_name(name, problems) else {
                continue;
            };
            if !valid_value(value) {
                problems.add(
                    raw.span(),
                    format!("route `{route}`: the value of `{name}` has control characters"),
                    None,
                );
                continue;
            }
            out.push((n, value.clone()));
        }
    }
    rules
}

/// Whether `value` may be sent as a header value (visible ASCII, spaces and tabs).
fn valid_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

/// Validates a route's `files` (`base`: the config file's directory).
pub(super) fn files(
    raw: &Spanned<super::routes::RawFiles>,
    base: &std::path::Path,
    problems: &mut Problems<'_>,
) -> Option<crate::content::files::FilesConfig> {
    let raw = raw.get_ref();
    let root = match crate::content::files::check_root(&base.join(raw.root.get_ref())) {
        Ok(root) => root,
        Err(why) => {
            problems.add(
                raw.root.span(),
                why,
                Some("name an existing directory (relative paths start at the config file's directory)".into()),
            );
            return None;
        }
    };
    let index = match &raw.index {
        Some(i) => i.items().to_vec(),
        None => vec!["index.html".into()],
    };
    let cache_control = raw.cache_control.as_ref().and_then(|c| {
        let v = c.get_ref().trim();
        if http::HeaderValue::from_str(v).is_ok() && !v.is_empty() {
            Some(v.to_owned())
        } else {
            problems.add(
                c.span(),
                "`cache_control` is not a header value",
                Some("write e.g. \"public, max-age=3600\"".into()),
            );
            None
        }
    });
    Some(crate::content::files::FilesConfig {
        root,
        index,
        listing: raw.listing.unwrap_or(false),
        precompressed: raw.precompressed.unwrap_or(false),
        hidden: raw.hidden.unwrap_or(false),
        cache_control,
    })
}
