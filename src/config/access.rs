//! Who may send traffic, as the config says it: a listener's `allow` and `deny` lists
//! (inline, and in files followed while Fulcrum runs), a route's own lists, and which
//! proxies in front are trusted to name the client (`trusted_proxies`, with the
//! `X-Forwarded-For` header or another).

use std::net::IpAddr;
use std::path::Path;

use toml::Spanned;

use super::error::Problems;
use crate::policy::lists::Sources;
use crate::policy::{Access, IpSet, RealIp};

const BLOCK_HINT: &str =
    "write an address or a CIDR block: \"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\"";

/// The blocks of a written list, each bad one reported where it is.
pub(super) fn blocks(
    list: Option<&Vec<Spanned<String>>>,
    problems: &mut Problems<'_>,
) -> Vec<(IpAddr, u8)> {
    list.into_iter()
        .flatten()
        .filter_map(|b| match crate::policy::ipset::parse_block(b.get_ref()) {
            Ok(block) => Some(block),
            Err(why) => {
                problems.add(b.span(), why, Some(BLOCK_HINT.into()));
                None
            }
        })
        .collect()
}

/// A listener's lists: written (`allow`, `deny`) and in files (`allow_file`,
/// `deny_file`, relative to the config file's directory, read now).
pub(super) fn listener(
    l: &super::raw::RawListener,
    base: &Path,
    problems: &mut Problems<'_>,
) -> (Access, Sources) {
    let sources = Sources {
        allow: l.allow.as_ref().map(|_| blocks(l.allow.as_ref(), problems)),
        deny: blocks(l.deny.as_ref(), problems),
        allow_file: l.allow_file.as_ref().map(|f| base.join(f.get_ref())),
        deny_file: l.deny_file.as_ref().map(|f| base.join(f.get_ref())),
    };
    match sources.build() {
        Ok(access) => (access, sources),
        Err(why) => {
            let span = [&l.deny_file, &l.allow_file]
                .into_iter()
                .flatten()
                .find(|f| why.contains(f.get_ref().as_str()))
                .or(l.deny_file.as_ref())
                .or(l.allow_file.as_ref())
                .map_or(0..0, Spanned::span);
            problems.add(
                span,
                why,
                Some(format!(
                    "one block per line ({BLOCK_HINT}); `#` starts a comment"
                )),
            );
            (Access::default(), sources)
        }
    }
}

/// A route's own lists (a request from elsewhere gets 403), if it has any.
pub(super) fn route(
    allow: Option<&Vec<Spanned<String>>>,
    deny: Option<&Vec<Spanned<String>>>,
    problems: &mut Problems<'_>,
) -> Option<Access> {
    if allow.is_none() && deny.is_none() {
        return None;
    }
    Some(Access {
        allow: allow.map(|a| IpSet::new(&blocks(Some(a), problems))),
        deny: IpSet::new(&blocks(deny, problems)),
    })
}

/// `trusted_proxies`, `client_ip_header` and `trusted_hops`: where the client's address
/// comes from when a trusted proxy is in front.
pub(super) fn real_ip(l: &super::raw::RawListener, problems: &mut Problems<'_>) -> Option<RealIp> {
    let Some(trusted) = &l.trusted_proxies else {
        for (key, span) in [
            (
                "client_ip_header",
                l.client_ip_header.as_ref().map(Spanned::span),
            ),
            ("trusted_hops", l.trusted_hops.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = span {
                problems.add(
                    span,
                    format!("`{key}` needs `trusted_proxies`"),
                    Some("list the proxies in front whose header is believed: trusted_proxies = [\"10.0.0.0/8\"]".into()),
                );
            }
        }
        return None;
    };
    let header = match &l.client_ip_header {
        None => "x-forwarded-for".to_owned(),
        Some(h) if !h.get_ref().is_empty() && h.get_ref().bytes().all(super::is_token_byte) => {
            h.get_ref().to_ascii_lowercase()
        }
        Some(h) => {
            problems.add(
                h.span(),
                format!("`{}` is not a header name", h.get_ref()),
                Some("e.g. \"X-Forwarded-For\" or \"X-Real-IP\"".into()),
            );
            "x-forwarded-for".to_owned()
        }
    };
    let hops = l.trusted_hops.as_ref().map(|_| {
        super::fields::integer(&l.trusted_hops, "trusted_hops", 1..=16, 1, problems) as usize
    });
    Some(RealIp {
        trusted: IpSet::new(&blocks(Some(trusted), problems)),
        header,
        hops,
    })
}
