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
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = t;
    while let Some(i) = rest.find('$') {
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        match VARIABLES.iter().position(|v| *v == &after[..len]) {
            Some(var) => {
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Var(var));
            }
            None => text.push_str(&rest[i..i + 1 + len]),
        }
        rest = &after[len..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
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
    /// Bytes from the client (relays).
    pub bytes_in: Option<u64>,
    /// Bytes to the client (relays).
    pub bytes_out: Option<u64>,
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
        let _ = write!(b.time, "{}.{:03}Z", b.second.1, now.subsec_millis());
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

/// Fields that do not apply to this kind of line (relay vs HTTP) are left out.
fn is_absent(i: usize, f: &Fields<'_>) -> bool {
    match VARIABLES[i] {
        "method" | "path" | "http" | "route" | "status" | "retries" | "grpc_status" => {
            f.relay.is_some()
        }
        "bytes_in" | "bytes_out" => f.relay.is_none(),
        "tls" | "sni" => f.tls.is_none(),
        _ => false,
    }
}

/// Writes variable `i`: text as is (`-` when absent), or as JSON.
fn value(out: &mut String, i: usize, time: &str, f: &Fields<'_>, as_json: bool) {
    let str_value = |out: &mut String, v: Option<&str>| match (v, as_json) {
        (None, false) => out.push('-'),
        (None, true) => out.push_str("null"),
        (Some(v), false) => out.push_str(v),
        (Some(v), true) => json_string(out, v),
    };
    let num = |out: &mut String, v: Option<u64>| match v {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None if as_json => out.push_str("null"),
        None => out.push('-'),
    };
    match VARIABLES[i] {
        "time" => str_value(out, Some(time)),
        "listener" => str_value(out, Some(f.listener)),
        "client" => match f.client {
            // An address needs no escaping.
            Some(c) if as_json => {
                let _ = write!(out, "\"{c}\"");
            }
            Some(c) => {
                let _ = write!(out, "{c}");
            }
            None => str_value(out, None),
        },
        "method" => str_value(out, f.method),
        "path" => str_value(out, f.path),
        "http" => str_value(out, f.http),
        "tls" => str_value(out, f.tls),
        "sni" => str_value(out, f.sni),
        "route" => str_value(out, f.route),
        "pool" => str_value(out, f.pool),
        "algorithm" => str_value(out, f.algorithm),
        "backend" => str_value(out, f.backend),
        "status" => num(out, f.status.map(u64::from)),
        "retries" => num(out, f.retries.map(u64::from)),
        "grpc_status" => str_value(out, f.grpc_status),
        "bytes_in" => num(out, f.bytes_in),
        "bytes_out" => num(out, f.bytes_out),
        _ => {
            let _ = write!(out, "{:.3}", f.took.as_secs_f64() * 1000.0);
        }
    }
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
