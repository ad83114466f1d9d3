//! A route's bounds on the request itself: `allowed_methods` (405), `max_body_size`
//! (413) and `max_uri_length` (414), as NGINX's `limit_except`,
//! `client_max_body_size` and HAProxy's `http-request deny` rules; who may use it:
//! `allow`/`deny` (403) and `basic_auth` (401).

use toml::Spanned;

use super::error::Problems;
use super::raw::RawSize;
use super::routes::{RawRoute, RequestLimits};

/// Validates a route's request limits (`base`: the config file's directory).
pub(super) fn check(
    r: &RawRoute,
    base: &std::path::Path,
    problems: &mut Problems<'_>,
) -> RequestLimits {
    let basic_auth = r.basic_auth.as_ref().and_then(|a| {
        let raw = a.get_ref();
        let file = base.join(raw.file.get_ref());
        match crate::policy::auth::read(&file) {
            Ok(_) => Some(super::routes::BasicAuthConfig {
                file,
                realm: raw.realm.clone().unwrap_or_else(|| "Restricted".into()),
            }),
            Err(why) => {
                problems.add(
                    raw.file.span(),
                    why,
                    Some("an htpasswd file of bcrypt hashes: `htpasswd -B -c FILE USER`".into()),
                );
                None
            }
        }
    });
    let mut out = RequestLimits {
        basic_auth,
        forward_auth: r
            .forward_auth
            .as_ref()
            .and_then(|f| forward_auth(f.get_ref(), problems)),
        ..RequestLimits::default()
    };
    for m in r
        .allowed_methods
        .as_ref()
        .map(|m| m.get_ref().as_slice())
        .unwrap_or_default()
    {
        let method = m.get_ref().trim().to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(super::is_token_byte) {
            problems.add(
                m.span(),
                format!("`{}` is not a method", m.get_ref()),
                Some("write method names: [\"GET\", \"HEAD\", \"POST\"]".into()),
            );
        } else if !out.allowed_methods.contains(&method) {
            out.allowed_methods.push(method);
        }
    }
    if let Some(m) = &r.allowed_methods
        && m.get_ref().is_empty()
    {
        problems.add(
            m.span(),
            "`allowed_methods` is empty: every request would get 405",
            Some("list the methods the route accepts, or remove the key".into()),
        );
    }
    out.clients = super::access::route(r.allow.as_ref(), r.deny.as_ref(), problems);
    out.max_body_size = r.max_body_size.as_ref().and_then(|v| size(v, problems));
    out.max_uri_length = r.max_uri_length.as_ref().and_then(|v| {
        let n = *v.get_ref();
        if (1..=1_048_576).contains(&n) {
            Some(n as usize)
        } else {
            problems.add(
                v.span(),
                format!("`max_uri_length` must be between 1 and 1048576, not {n}"),
                Some("the request line is also bounded by limits.max_header_size".into()),
            );
            None
        }
    });
    out
}

fn size(v: &Spanned<RawSize>, problems: &mut Problems<'_>) -> Option<u64> {
    let bytes = v.get_ref().bytes();
    if bytes.is_none() {
        problems.add(
            v.span(),
            "`max_body_size` is not a size",
            Some("write bytes or a size with a unit: 1048576, \"64k\", \"10m\", \"1g\"".into()),
        );
    }
    bytes
}

fn forward_auth(
    raw: &super::routes::RawForwardAuth,
    problems: &mut Problems<'_>,
) -> Option<super::routes::ForwardAuthConfig> {
    let url = raw.url.get_ref().trim();
    let ok = url
        .strip_prefix("http://")
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        && url.parse::<http::Uri>().is_ok();
    if !ok {
        problems.add(
            raw.url.span(),
            format!("`{url}` is not an auth service URL"),
            Some("write http://HOST:PORT/PATH (https is not supported yet: put the service on a private address)".into()),
        );
        return None;
    }
    let mut names = |list: &Option<Vec<Spanned<String>>>, default: &[&str]| -> Vec<String> {
        let Some(list) = list else {
            return default.iter().map(|s| s.to_string()).collect();
        };
        list.iter()
            .filter_map(|n| {
                let name = n.get_ref().trim();
                if !name.is_empty() && name.bytes().all(super::is_token_byte) {
                    Some(name.to_ascii_lowercase())
                } else {
                    problems.add(n.span(), format!("`{name}` is not a header name"), None);
                    None
                }
            })
            .collect()
    };
    let send = names(&raw.send, &["authorization", "cookie"]);
    let copy = names(&raw.copy, &[]);
    Some(super::routes::ForwardAuthConfig {
        url: url.to_owned(),
        send,
        copy,
        timeout: super::fields::duration(
            &raw.timeout,
            "forward_auth.timeout",
            std::time::Duration::from_secs(5),
            problems,
        ),
    })
}
