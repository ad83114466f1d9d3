//! The access log: one line per HTTP request, TCP connection or UDP flow, in a readable
//! `key=value` text, JSON, or a template of your own (`$client $status $ms`), to
//! standard error or a file (reopened on SIGUSR1 for logrotate), with sampling and an
//! errors-only mode.
//!
//! Off the request path: a line is formatted into its worker thread's batch buffer (no
//! lock, no allocation: buffers are reused), with the clock read the request's end
//! already took, and whole batches go to the writer thread ([`writer`]) when they reach
//! 256 KiB or are 100 ms old (each worker flushes on a timer). A slow disk makes lines
//! drop, counted, never a request wait.

mod format;
pub mod writer;

use format::{civil, json, text, value};

use std::cell::RefCell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{AccessLogConfig, LogFormat};
use crate::pipeline::upstream::Trail;

/// A batch is handed to the writer when it is this large (large batches keep the
/// writer thread's wake-ups and writes rare: about one per 800 lines)...
const BATCH: usize = 256 * 1024;
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
    /// The wall clock (since the Unix epoch) at an instant, read once per batch: a
    /// line's time is derived from the instant its request ended.
    clock: Option<(Instant, Duration)>,
}

thread_local! {
    static BATCH_BUF: RefCell<Batch> = const {
        RefCell::new(Batch {
            buf: String::new(),
            time: String::new(),
            lines: 0,
            since: None,
            second: (0, String::new()),
            clock: None,
        })
    };
}

/// Writes one line with `settings`' format into this thread's batch; `now` is when the
/// request (or connection) ended.
pub fn log(settings: &Settings, f: &Fields<'_>, now: Instant) {
    BATCH_BUF.with(|b| {
        let mut b = b.borrow_mut();
        let b = &mut *b;
        let (at, wall) = *b.clock.get_or_insert_with(|| {
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            (Instant::now(), wall)
        });
        let now_wall = wall + now.saturating_duration_since(at);
        let now_instant = now;
        let now = now_wall;
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
        if b.lines == 1 {
            // The first line of a batch: the worker's flusher hands it over in
            // FLUSH_EVERY at the latest (an idle worker has no timer running).
            FLUSH.with(|n| n.notify_one());
        }
        let since = *b.since.get_or_insert(now_instant);
        if b.buf.len() >= BATCH || now_instant.saturating_duration_since(since) >= FLUSH_EVERY {
            hand_over(b);
        }
    });
}

thread_local! {
    /// Tells this thread's flusher ([`flusher`]) that a batch has begun.
    static FLUSH: std::sync::Arc<tokio::sync::Notify> = std::sync::Arc::new(tokio::sync::Notify::new());
}

/// Runs on a worker's event loop: hands the worker's batch over [`FLUSH_EVERY`] after
/// its first line (so that lines wait at most that long), and sleeps while no line is
/// logged.
pub async fn flusher() {
    let begun = FLUSH.with(std::sync::Arc::clone);
    loop {
        begun.notified().await;
        tokio::time::sleep(FLUSH_EVERY).await;
        flush();
    }
}

/// Hands this thread's lines to the writer if any are waiting (each worker's [`flusher`]
/// calls it [`FLUSH_EVERY`] after a batch begins).
pub fn flush() {
    BATCH_BUF.with(|b| {
        let mut b = b.borrow_mut();
        if b.lines > 0 {
            hand_over(&mut b);
        }
    });
}

fn hand_over(b: &mut Batch) {
    // Only whole UTF-8 lines are in a batch, and the buffer comes back empty.
    let next = String::from_utf8(writer::buffer(BATCH + 4096)).unwrap_or_default();
    let batch = std::mem::replace(&mut b.buf, next);
    writer::send(batch.into_bytes(), b.lines);
    b.lines = 0;
    b.since = None;
    // The wall clock is read again for the next batch.
    b.clock = None;
}
