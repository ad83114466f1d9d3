//! The access log's line formats: the readable `key=value` text (written straight for
//! HTTP requests, the hot case), JSON, and the variables of templates; numbers, times
//! and addresses are written without the formatting machinery.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Fields, VARIABLES};
use crate::digits::Digits;
use crate::pipeline::upstream::Trail;

/// The text line of an HTTP request, written straight (the hot case: no per-field
/// dispatch); the same as [`text_any`] gives, which a test checks.
pub(super) fn text(out: &mut String, time: &str, f: &Fields<'_>) {
    if f.relay.is_some() {
        return text_any(out, time, f);
    }
    let opt = |out: &mut String, key: &str, v: Option<&str>| {
        out.push_str(key);
        out.push_str(v.unwrap_or("-"));
    };
    out.reserve(512);
    out.push_str(time);
    out.push_str(" http listener=");
    out.push_str(f.listener);
    out.push_str(" client=");
    match f.client {
        Some(c) => address(out, c),
        None => out.push('-'),
    }
    opt(out, " method=", f.method);
    opt(out, " path=", f.path);
    opt(out, " http=", f.http);
    if f.tls.is_some() {
        opt(out, " tls=", f.tls);
        opt(out, " sni=", f.sni);
    }
    opt(out, " route=", f.route);
    opt(out, " pool=", f.pool);
    opt(out, " backend=", f.backend);
    let num = |out: &mut String, key: &str, v: Option<u64>| {
        out.push_str(key);
        match v {
            Some(n) => integer(out, n),
            None => out.push('-'),
        }
    };
    num(out, " status=", f.status.map(u64::from));
    num(out, " retries=", f.retries.map(u64::from));
    opt(out, " grpc_status=", f.grpc_status);
    opt(out, " algorithm=", f.algorithm);
    num(out, " bytes_in=", f.bytes_in);
    num(out, " bytes_out=", f.bytes_out);
    if let Some(t) = f.trail {
        for (key, took) in [
            (" queue_ms=", t.queued),
            (" connect_ms=", t.connect),
            (" ttfb_ms=", t.first_byte),
        ] {
            if let Some(took) = took {
                out.push_str(key);
                millis(out, took);
            }
        }
        if t.retried[0].is_some() {
            out.push_str(" retried=");
            retried(out, t, false);
        }
        if let Some(sticky) = t.sticky {
            out.push_str(" sticky=");
            out.push_str(sticky);
        }
        if let Some((field, why)) = t.refused {
            out.push(' ');
            out.push_str(field);
            out.push('=');
            out.push_str(why);
        }
        if let Some(coding) = t.compressed {
            out.push_str(" compressed=");
            out.push_str(coding);
        }
        if let Some(cache) = t.cache {
            out.push_str(" cache=");
            out.push_str(cache);
        }
    }
    out.push_str(" ms=");
    millis(out, f.took);
}

/// The text line of any kind, field by field.
fn text_any(out: &mut String, time: &str, f: &Fields<'_>) {
    out.push_str(time);
    out.push_str(match f.relay {
        Some("udp") => " udp",
        Some(_) => " tcp",
        None => " http",
    });
    for (i, name) in VARIABLES.iter().enumerate().skip(1) {
        if is_absent(i, f) {
            continue;
        }
        out.push(' ');
        out.push_str(name);
        out.push('=');
        value(out, i, time, f, false);
    }
}

pub(super) fn json(out: &mut String, time: &str, f: &Fields<'_>) {
    out.push('{');
    let _ = write!(
        out,
        "\"time\":\"{time}\",\"kind\":\"{}\"",
        f.relay.unwrap_or("http")
    );
    for (i, name) in VARIABLES.iter().enumerate().skip(1) {
        if is_absent(i, f) {
            continue;
        }
        let _ = write!(out, ",\"{name}\":");
        value(out, i, time, f, true);
    }
    out.push('}');
}

// Indexes into VARIABLES (the order of `config::LOG_VARIABLES`).
const TIME: usize = 0;
const LISTENER: usize = 1;
const CLIENT: usize = 2;
const METHOD: usize = 3;
const PATH: usize = 4;
const HTTP: usize = 5;
const TLS: usize = 6;
const SNI: usize = 7;
const ROUTE: usize = 8;
const POOL: usize = 9;
const BACKEND: usize = 10;
const STATUS: usize = 11;
const RETRIES: usize = 12;
const GRPC_STATUS: usize = 13;
const ALGORITHM: usize = 14;
const BYTES_IN: usize = 15;
const BYTES_OUT: usize = 16;
const QUEUE_MS: usize = 17;
const CONNECT_MS: usize = 18;
const TTFB_MS: usize = 19;
const RETRIED: usize = 20;
const STICKY: usize = 21;
const LIMITED: usize = 22;
const DENIED: usize = 23;
const COMPRESSED: usize = 24;
const CACHE: usize = 25;

/// Fields that do not apply to this kind of line (relay vs HTTP), or to this request
/// (it did not queue, a kept connection was used, nothing was retried), are left out.
#[inline]
fn is_absent(i: usize, f: &Fields<'_>) -> bool {
    match i {
        METHOD | PATH | HTTP | ROUTE | STATUS | RETRIES | GRPC_STATUS => f.relay.is_some(),
        TLS | SNI => f.tls.is_none(),
        QUEUE_MS => f.trail.is_none_or(|t| t.queued.is_none()),
        CONNECT_MS => f.trail.is_none_or(|t| t.connect.is_none()),
        TTFB_MS => f.trail.is_none_or(|t| t.first_byte.is_none()),
        RETRIED => f.trail.is_none_or(|t| t.retried[0].is_none()),
        STICKY => f.trail.is_none_or(|t| t.sticky.is_none()),
        LIMITED | DENIED => refused(i, f).is_none(),
        COMPRESSED => f.trail.is_none_or(|t| t.compressed.is_none()),
        CACHE => f.trail.is_none_or(|t| t.cache.is_none()),
        _ => false,
    }
}

/// Writes variable `i`: text as is (`-` when absent), or as JSON.
pub(super) fn value(out: &mut String, i: usize, time: &str, f: &Fields<'_>, as_json: bool) {
    let text = |out: &mut String, v: Option<&str>| match (v, as_json) {
        (None, false) => out.push('-'),
        (None, true) => out.push_str("null"),
        (Some(v), false) => out.push_str(v),
        (Some(v), true) => json_string(out, v),
    };
    let number = |out: &mut String, v: Option<u64>| match v {
        Some(n) => integer(out, n),
        None if as_json => out.push_str("null"),
        None => out.push('-'),
    };
    match i {
        TIME => text(out, Some(time)),
        LISTENER => text(out, Some(f.listener)),
        CLIENT => match f.client {
            // An address needs no escaping.
            Some(c) => {
                if as_json {
                    out.push('"');
                }
                address(out, c);
                if as_json {
                    out.push('"');
                }
            }
            None => text(out, None),
        },
        METHOD => text(out, f.method),
        PATH => text(out, f.path),
        HTTP => text(out, f.http),
        TLS => text(out, f.tls),
        SNI => text(out, f.sni),
        ROUTE => text(out, f.route),
        POOL => text(out, f.pool),
        BACKEND => text(out, f.backend),
        STATUS => number(out, f.status.map(u64::from)),
        RETRIES => number(out, f.retries.map(u64::from)),
        GRPC_STATUS => text(out, f.grpc_status),
        ALGORITHM => text(out, f.algorithm),
        BYTES_IN => number(out, f.bytes_in),
        BYTES_OUT => number(out, f.bytes_out),
        QUEUE_MS | CONNECT_MS | TTFB_MS => {
            let took = f.trail.and_then(|t| match i {
                QUEUE_MS => t.queued,
                CONNECT_MS => t.connect,
                _ => t.first_byte,
            });
            match took {
                Some(took) => millis(out, took),
                None => number(out, None),
            }
        }
        RETRIED => match f.trail.filter(|t| t.retried[0].is_some()) {
            Some(t) => retried(out, t, as_json),
            None => text(out, None),
        },
        STICKY => text(out, f.trail.and_then(|t| t.sticky)),
        LIMITED | DENIED => text(out, refused(i, f)),
        COMPRESSED => text(out, f.trail.and_then(|t| t.compressed)),
        CACHE => text(out, f.trail.and_then(|t| t.cache)),
        _ => millis(out, f.took),
    }
}

/// What the admission phase refused the request for, if it is variable `i`'s kind
/// (`limited` or `denied`).
fn refused<'f>(i: usize, f: &Fields<'f>) -> Option<&'static str> {
    let (field, why) = f.trail?.refused?;
    let wanted = if i == LIMITED { "limited" } else { "denied" };
    (field == wanted).then_some(why)
}

/// Milliseconds with three decimals, without float formatting.
fn millis(out: &mut String, took: Duration) {
    let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    integer(out, us / 1000);
    out.push('.');
    let frac = us % 1000;
    out.push(char::from(b'0' + (frac / 100) as u8));
    out.push(char::from(b'0' + (frac / 10 % 10) as u8));
    out.push(char::from(b'0' + (frac % 10) as u8));
}

/// Each retry as `backend: why`, separated by `; `, quoted (text and JSON alike: the
/// reasons have spaces).
fn retried(out: &mut String, t: &Trail, as_json: bool) {
    let mut all = String::new();
    for (backend, why) in t.retried.iter().flatten() {
        if !all.is_empty() {
            all.push_str("; ");
        }
        let _ = write!(all, "{}: {why}", backend.name);
    }
    if as_json {
        json_string(out, &all);
    } else {
        out.push('"');
        out.push_str(&all.replace('"', "'"));
        out.push('"');
    }
}

/// Decimal digits of `n`, without the formatting machinery.
#[inline]
fn integer(out: &mut String, n: u64) {
    out.push_str(Digits::decimal(n).as_str());
}

/// `IP:PORT`, IPv4 written digit by digit, IPv6 as `[..]:port`.
fn address(out: &mut String, a: std::net::SocketAddr) {
    match a {
        std::net::SocketAddr::V4(v4) => out.push_str(Digits::ipv4(*v4.ip()).as_str()),
        std::net::SocketAddr::V6(v6) => {
            let _ = write!(out, "[{}]", v6.ip());
        }
    }
    out.push(':');
    integer(out, u64::from(a.port()));
}

fn json_string(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of `secs` since the Unix epoch.
pub(super) fn civil(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accesslog::{Piece, parse_template};

    #[test]
    fn indexes_name_their_variables() {
        let named = [
            (TIME, "time"),
            (LISTENER, "listener"),
            (CLIENT, "client"),
            (METHOD, "method"),
            (PATH, "path"),
            (HTTP, "http"),
            (TLS, "tls"),
            (SNI, "sni"),
            (ROUTE, "route"),
            (POOL, "pool"),
            (BACKEND, "backend"),
            (STATUS, "status"),
            (RETRIES, "retries"),
            (GRPC_STATUS, "grpc_status"),
            (ALGORITHM, "algorithm"),
            (BYTES_IN, "bytes_in"),
            (BYTES_OUT, "bytes_out"),
            (QUEUE_MS, "queue_ms"),
            (CONNECT_MS, "connect_ms"),
            (TTFB_MS, "ttfb_ms"),
            (RETRIED, "retried"),
            (STICKY, "sticky"),
            (LIMITED, "limited"),
            (DENIED, "denied"),
            (COMPRESSED, "compressed"),
            (CACHE, "cache"),
        ];
        for (i, name) in named {
            assert_eq!(VARIABLES[i], name);
        }
        assert_eq!(VARIABLES.last(), Some(&"ms"));
        let mut out = String::new();
        address(&mut out, "10.0.255.1:8080".parse().unwrap());
        integer(&mut out, 0);
        assert_eq!(out, "10.0.255.1:80800");
    }

    #[test]
    fn the_straight_text_line_is_the_field_by_field_one() {
        let backend = std::sync::Arc::new(crate::balance::Backend::new(
            "b1",
            "127.0.0.1:9".parse().unwrap(),
            1,
            false,
        ));
        let trail = Trail {
            connect: Some(Duration::from_micros(1234)),
            first_byte: Some(Duration::from_micros(56)),
            sticky: Some("moved"),
            retried: [
                Some((backend, crate::pipeline::upstream::Why::Status(503))),
                None,
                None,
            ],
            ..Trail::default()
        };
        let full = Fields {
            listener: "web",
            client: Some("10.0.0.1:4000".parse().unwrap()),
            method: Some("GET"),
            path: Some("/a?b"),
            http: Some("1.1"),
            tls: Some("1.3"),
            sni: None,
            route: Some("api"),
            pool: Some("app"),
            algorithm: Some("round_robin"),
            backend: Some("b2"),
            status: Some(200),
            retries: Some(1),
            bytes_in: Some(77),
            bytes_out: Some(1500),
            trail: Some(&trail),
            took: Duration::from_micros(2500),
            ..Fields::default()
        };
        let bare = Fields {
            listener: "web",
            took: Duration::from_micros(1),
            ..Fields::default()
        };
        for f in [&full, &bare] {
            let (mut straight, mut any) = (String::new(), String::new());
            text(&mut straight, "T", f);
            text_any(&mut any, "T", f);
            assert_eq!(straight, any);
        }
        let mut line = String::new();
        text(&mut line, "T", &full);
        assert!(
            line.ends_with(
                r#"connect_ms=1.234 ttfb_ms=0.056 retried="b1: the backend answered 503" sticky=moved ms=2.500"#
            ),
            "{line}"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(civil(0), "1970-01-01T00:00:00");
        assert_eq!(civil(1_764_125_423), "2025-11-26T02:50:23");
        assert_eq!(civil(951_782_400), "2000-02-29T00:00:00");
    }

    #[test]
    fn templates() {
        let pieces = parse_template("$client - $status [$nope] $ms");
        assert!(matches!(pieces[0], Piece::Var(2)));
        assert!(matches!(&pieces[1], Piece::Text(t) if t == " - "));
        assert_eq!(
            crate::config::unknown_variables("$client $nope $status"),
            vec!["nope".to_owned()]
        );
        let mut out = String::new();
        let f = Fields {
            listener: "web",
            status: Some(200),
            took: Duration::from_micros(1500),
            ..Fields::default()
        };
        for p in &pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(v) => value(&mut out, *v, "T", &f, false),
            }
        }
        assert_eq!(out, "- - 200 [$nope] 1.500");
        let mut out = String::new();
        json(
            &mut out,
            "T",
            &Fields {
                path: Some("/a\"b"),
                ..f
            },
        );
        assert!(
            out.starts_with("{\"time\":\"T\",\"kind\":\"http\",\"listener\":\"web\""),
            "{out}"
        );
        assert!(out.contains("\"path\":\"/a\\\"b\""), "{out}");
        assert!(out.contains("\"status\":200"), "{out}");
    }
}
