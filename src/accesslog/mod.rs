//! The access log: one line per HTTP request, TCP connection or UDP flow, in a readable
//! `key=value` text, JSON, or a template of your own (`$client $status $ms`), to
//! standard error or a file (reopened on SIGUSR1 for logrotate), with sampling and an
//! errors-only mode.
//!
//! Off the request path: a line is formatted into its worker thread's batch buffer (no
//! lock, no allocation once the buffer has grown), and whole batches go to the writer
//! thread ([`writer`]) when they reach 32 KiB or are 100 ms old (each worker flushes on
//! a timer). A slow disk makes lines drop, counted, never a request wait.

pub mod writer;

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{AccessLogConfig, LogFormat};
use crate::pipeline::upstream::Trail;

/// A batch is handed to the writer when it is this large...
const BATCH: usize = 32 * 1024;
/// ...or this old.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The template variables (`$name`).
pub use crate::config::LOG_VARIABLES as VARIABLES;

/// What a listener logs, built from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Log anything at all.
    pub enabled: bool,
    format: Format,
    /// Log a successful request with this probability (errors always).
    sample: f64,
    errors_only: bool,
}

#[derive(Debug, Clone)]
enum Format {
    Text,
    Json,
    /// Literal text and variable indexes (into [`VARIABLES`]).
    Template(Vec<Piece>),
}

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Var(usize),
}

impl Settings {
    /// From the validated config.
    pub fn new(c: &AccessLogConfig) -> Settings {
        Settings {
            enabled: c.enabled,
            format: match &c.format {
                LogFormat::Text => Format::Text,
                LogFormat::Json => Format::Json,
                LogFormat::Template(t) => Format::Template(parse_template(t)),
            },
            sample: c.sample,
            errors_only: c.errors_only,
        }
    }

    /// Whether a request that ended with `status` is logged.
    #[inline]
    pub fn wants(&self, status: u16) -> bool {
        if !self.enabled {
            return false;
        }
        let failed = status >= 500 || status == 0;
        failed || (!self.errors_only && (self.sample >= 1.0 || fastrand::f64() < self.sample))
    }
}

/// Splits a template into text and variables; unknown names stay as text (validation
/// refuses them before this).
fn parse_template(t: &str) -> Vec<Piece> {
    let mut pieces: Vec<Piece> = Vec::new();
    for (var, name) in crate::config::template_pieces(t) {
        match var
            .then(|| VARIABLES.iter().position(|v| *v == name))
            .flatten()
        {
            Some(i) => pieces.push(Piece::Var(i)),
            None => {
                let text = if var {
                    format!("${name}")
                } else {
                    name.to_owned()
                };
                match pieces.last_mut() {
                    Some(Piece::Text(t)) => t.push_str(&text),
                    _ => pieces.push(Piece::Text(text)),
                }
            }
        }
    }
    pieces
}

/// One line's values; `None` prints as `-` (text) or `null` (JSON).
#[derive(Debug, Default)]
pub struct Fields<'a> {
    /// `tcp` or `udp` for relays; `None` for HTTP requests.
    pub relay: Option<&'static str>,
    /// The listener.
    pub listener: &'a str,
    /// The client address.
    pub client: Option<std::net::SocketAddr>,
    /// HTTP method.
    pub method: Option<&'a str>,
    /// HTTP target.
    pub path: Option<&'a str>,
    /// `1.0`, `1.1` or `2`.
    pub http: Option<&'static str>,
    /// TLS version, when the client came over TLS.
    pub tls: Option<&'static str>,
    /// The server name the TLS client asked for.
    pub sni: Option<&'a str>,
    /// The route.
    pub route: Option<&'a str>,
    /// The pool.
    pub pool: Option<&'a str>,
    /// Its algorithm.
    pub algorithm: Option<&'static str>,
    /// The backend of the last try.
    pub backend: Option<&'a str>,
    /// The status sent (0: none).
    pub status: Option<u16>,
    /// Retries made.
    pub retries: Option<u32>,
    /// gRPC status from the backend.
    pub grpc_status: Option<&'a str>,
    /// Bytes from the client.
    pub bytes_in: Option<u64>,
    /// Bytes to the client.
    pub bytes_out: Option<u64>,
    /// Queue, connect and first-byte times, and why retries were made.
    pub trail: Option<&'a Trail>,
    /// Duration.
    pub took: Duration,
}

struct Batch {
    buf: String,
    /// The time of the line being written.
    time: String,
    lines: u64,
    since: Option<Instant>,
    /// The current second, formatted (`2026-11-26T02:50:23`), and which second it is.
    second: (u64, String),
}

thread_local! {
    static BATCH_BUF: RefCell<Batch> = const {
        RefCell::new(Batch {
            buf: String::new(),
            time: String::new(),
            lines: 0,
            since: None,
            second: (0, String::new()),
        })
    };
}

/// Writes one line with `settings`' format into this thread's batch.
pub fn log(settings: &Settings, f: &Fields<'_>) {
    BATCH_BUF.with(|b| {
        let mut b = b.borrow_mut();
        let b = &mut *b;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        if b.second.0 != now.as_secs() || b.second.1.is_empty() {
            b.second = (now.as_secs(), civil(now.as_secs()));
        }
        b.time.clear();
        b.time.push_str(&b.second.1);
        let ms = now.subsec_millis();
        b.time.push('.');
        for d in [ms / 100, ms / 10 % 10, ms % 10] {
            b.time.push(char::from(b'0' + d as u8));
        }
        b.time.push('Z');
        let (out, time) = (&mut b.buf, &b.time);
        match &settings.format {
            Format::Text => text(out, time, f),
            Format::Json => json(out, time, f),
            Format::Template(pieces) => {
                for p in pieces {
                    match p {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Var(v) => value(out, *v, time, f, false),
                    }
                }
            }
        }
        out.push('\n');
        b.lines += 1;
        let since = *b.since.get_or_insert_with(Instant::now);
        if b.buf.len() >= BATCH || since.elapsed() >= FLUSH_EVERY {
            hand_over(b);
        }
    });
}

/// Hands this thread's lines to the writer if any are waiting (each worker calls it
/// every [`FLUSH_EVERY`]).
pub fn flush() {
    BATCH_BUF.with(|b| {
        let mut b = b.borrow_mut();
        if b.lines > 0 {
            hand_over(&mut b);
        }
    });
}

fn hand_over(b: &mut Batch) {
    let batch = std::mem::replace(&mut b.buf, String::with_capacity(BATCH + 1024));
    writer::send(batch.into_bytes(), b.lines);
    b.lines = 0;
    b.since = None;
}

fn text(out: &mut String, time: &str, f: &Fields<'_>) {
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

fn json(out: &mut String, time: &str, f: &Fields<'_>) {
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
        _ => false,
    }
}

/// Writes variable `i`: text as is (`-` when absent), or as JSON.
fn value(out: &mut String, i: usize, time: &str, f: &Fields<'_>, as_json: bool) {
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
        _ => millis(out, f.took),
    }
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
fn integer(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or("0"));
}

/// `IP:PORT`, IPv4 written digit by digit, IPv6 as `[..]:port`.
fn address(out: &mut String, a: std::net::SocketAddr) {
    match a {
        std::net::SocketAddr::V4(v4) => {
            for (k, octet) in v4.ip().octets().iter().enumerate() {
                if k > 0 {
                    out.push('.');
                }
                integer(out, u64::from(*octet));
            }
        }
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
fn civil(secs: u64) -> String {
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
