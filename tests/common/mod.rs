//! Shared test harness: real hyper backends on ephemeral loopback ports, the real
//! `fulcrum` binary started on a config file, and raw TCP clients for hostile input.
#![allow(dead_code)]

pub mod dns;
pub mod peers;
pub mod pki;
pub mod redis;

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// A hyper backend that names itself in every response.
///
/// Routes: `/` (its name), `/echo` (echoes the body), `/headers` (the request head it
/// received), `/bytes/N` (N bytes streamed in 64 KiB chunks), `/count` (counts the body
/// bytes it read), `/slow/MS` (answers after MS milliseconds), `/status/CODE`, `/login`
/// (sets a new `JSESSIONID` session cookie, `NAME-N`), `/text/N` (N bytes of [`text`];
/// query: `type=` Content-Type (default text/plain), `chunked=1` no Content-Length,
/// `etag=`, `cc=` Cache-Control, `ce=` Content-Encoding, `cr=` Content-Range, `vary=`,
/// `sc=` Set-Cookie, `lm=` Last-Modified, `delay=MS` before answering), `/events/N/MS` (N server-sent
/// events, one every MS milliseconds).
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    pub in_flight: Arc<AtomicUsize>,
    pub max_in_flight: Arc<AtomicUsize>,
    pub last_head: Arc<Mutex<String>>,
    /// While set, every response is a 500.
    pub failing: Arc<std::sync::atomic::AtomicBool>,
    /// While set, every response carries `X-Backend-Load` with this value.
    pub load: Arc<Mutex<Option<String>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Backend {
    pub fn start(name: &str) -> Backend {
        Backend::start_slow(name, Duration::ZERO)
    }

    /// A backend that waits `delay` before answering any request.
    pub fn start_slow(name: &str, delay: Duration) -> Backend {
        Backend::start_at(name, "127.0.0.1:0".parse().unwrap(), delay)
    }

    /// A backend listening on `addr` (to restart one where it was).
    pub fn start_at(name: &str, addr: SocketAddr, delay: Duration) -> Backend {
        Backend::start_with(name, addr, delay, None)
    }

    /// A backend that speaks TLS with `tls` (HTTP/1.1 or HTTP/2 as agreed with ALPN).
    pub fn start_tls(name: &str, tls: Arc<rustls::ServerConfig>) -> Backend {
        Backend::start_with(
            name,
            "127.0.0.1:0".parse().unwrap(),
            Duration::ZERO,
            Some(tls),
        )
    }

    /// The general case: HTTP/1.1 and HTTP/2 (prior knowledge, or ALPN over `tls`).
    pub fn start_with(
        name: &str,
        addr: SocketAddr,
        delay: Duration,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Backend {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let last_head = Arc::new(Mutex::new(String::new()));
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let load = Arc::new(Mutex::new(None));
        let state = State {
            failing: failing.clone(),
            load: load.clone(),
            name: name.to_string(),
            requests: requests.clone(),
            in_flight: in_flight.clone(),
            max_in_flight: max_in_flight.clone(),
            last_head: last_head.clone(),
            delay,
        };
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let server = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = server.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(tls) => {
                            let Ok(stream) =
                                tokio_rustls::TlsAcceptor::from(tls).accept(stream).await
                            else {
                                return;
                            };
                            let _ = server.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Backend {
            name: name.to_string(),
            addr,
            requests,
            in_flight,
            max_in_flight,
            last_head,
            failing,
            load,
            _runtime: runtime,
        }
    }

    /// This backend as the library's config sees it (for in-process tests).
    pub fn config(&self, backup: bool) -> fulcrum::config::BackendConfig {
        fulcrum::config::BackendConfig {
            name: self.name.clone(),
            address: self.addr,
            weight: 1,
            backup,
            source: None,
        }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct State {
    name: String,
    requests: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    last_head: Arc<Mutex<String>>,
    delay: Duration,
    failing: Arc<std::sync::atomic::AtomicBool>,
    load: Arc<Mutex<Option<String>>>,
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

async fn handle(state: State, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let mut head = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
    for (k, v) in req.headers() {
        head.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
    }
    *state.last_head.lock().unwrap() = head.clone();
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    let path = req.uri().path().to_string();
    let resp = if path == "/echo" {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Response::new(full(body))
    } else if path == "/headers" {
        Response::new(full(head))
    } else if path == "/count" {
        let mut body = req.into_body();
        let mut total: u64 = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => total += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => break,
            }
        }
        Response::new(full(total.to_string()))
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        let n: u64 = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let chunks = n / chunk.len() as u64;
        let rest = (n % chunk.len() as u64) as usize;
        let tail = chunk.slice(..rest);
        let stream = futures_util::stream::iter(0..chunks)
            .map(move |_| Ok::<_, std::io::Error>(Frame::data(chunk.clone())))
            .chain(futures_util::stream::iter(
                (rest > 0).then(|| Ok(Frame::data(tail.clone()))),
            ));
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        r.headers_mut()
            .insert("content-length", n.to_string().parse().unwrap());
        r
    } else if let Some(n) = path.strip_prefix("/text/") {
        let query = req.uri().query().unwrap_or("").to_owned();
        if let Some(ms) = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("delay="))
            .and_then(|ms| ms.parse().ok())
        {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let if_none_match = req
            .headers()
            .get("if-none-match")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut r = text_response(n.parse().unwrap_or(0), &query);
        // Revalidation: the stored tag is still the one.
        if let Some(tag) = if_none_match
            && r.headers()
                .get("etag")
                .is_some_and(|e| e.to_str().ok() == Some(&tag))
        {
            *r.body_mut() = full(Bytes::new());
            *r.status_mut() = hyper::StatusCode::NOT_MODIFIED;
            r.headers_mut().remove("content-length");
        }
        // Which request of this backend answered (the count so far).
        let n = state.requests.load(Ordering::SeqCst);
        r.headers_mut()
            .insert("x-request", n.to_string().parse().unwrap());
        r
    } else if let Some(spec) = path.strip_prefix("/events/") {
        let (n, ms) = spec.split_once('/').unwrap_or(("1", "0"));
        let (n, ms): (u64, u64) = (n.parse().unwrap_or(1), ms.parse().unwrap_or(0));
        let stream = futures_util::stream::iter(0..n).then(move |i| async move {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Ok::<_, std::io::Error>(Frame::data(Bytes::from(format!("data: event {i}\n\n"))))
        });
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        r.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        r
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        Response::new(full(state.name.clone()))
    } else if path == "/login" {
        // An application session: a new session cookie naming this backend.
        let mut r = Response::new(full(state.name.clone()));
        let n = state.requests.load(Ordering::SeqCst);
        let cookie = format!("JSESSIONID={}-{n}; Path=/; HttpOnly", state.name);
        r.headers_mut()
            .insert("set-cookie", cookie.parse().unwrap());
        r
    } else if let Some(code) = path.strip_prefix("/status/") {
        let mut r = Response::new(full(state.name.clone()));
        *r.status_mut() = hyper::StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap();
        r
    } else {
        Response::new(full(state.name.clone()))
    };
    let mut resp = resp;
    if state.failing.load(Ordering::SeqCst) {
        *resp.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
    }
    resp.headers_mut()
        .insert("x-backend", state.name.parse().unwrap());
    if let Some(load) = state.load.lock().unwrap().as_deref() {
        resp.headers_mut()
            .insert("x-backend-load", load.parse().unwrap());
    }
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    Ok(resp)
}

/// The `fulcrum` binary running a config; killed on drop.
pub struct Fulcrum {
    pub addr: SocketAddr,
    pub child: Child,
    pub log: Arc<Mutex<String>>,
    /// The config file it runs.
    pub path: std::path::PathBuf,
    _dir: Option<tempfile::TempDir>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fulcrum")
}

/// Runs `fulcrum check -c PATH` to completion.
pub fn check_file(path: &std::path::Path) -> std::process::Output {
    Command::new(bin())
        .arg("check")
        .arg("-c")
        .arg(path)
        .output()
        .unwrap()
}

/// The status code curl gets with `args` (its body thrown away); `000` when none came.
#[allow(dead_code)]
pub fn code(args: &[&str]) -> String {
    let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
    all.extend_from_slice(args);
    curl(&all).1
}

/// Runs `fulcrum check` on `text` written as `fulcrum.toml`, which must be refused;
/// what it said on standard error.
#[allow(dead_code)]
pub fn config_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fulcrum.toml");
    std::fs::write(&file, text).unwrap();
    let out = check_file(&file);
    assert!(!out.status.success(), "accepted: {text}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

impl Fulcrum {
    /// Starts `fulcrum run` on `config` (listen on 127.0.0.1:0) and waits until it listens.
    pub fn start(config: &str) -> Fulcrum {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fulcrum.toml");
        std::fs::write(&path, config).unwrap();
        let mut f = Fulcrum::spawn(&path, &[]);
        f._dir = Some(dir);
        f
    }

    /// Starts `fulcrum run` on `config` with more arguments (`args`).
    #[allow(dead_code)]
    pub fn start_args(config: &str, args: &[&str]) -> Fulcrum {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fulcrum.toml");
        std::fs::write(&path, config).unwrap();
        let mut f = Fulcrum::spawn(&path, args);
        f._dir = Some(dir);
        f
    }

    /// Starts `fulcrum run --takeover` on this one's config file: the new process takes
    /// the listening sockets over, and this one stops.
    pub fn take_over(&self) -> Fulcrum {
        Fulcrum::spawn(&self.path, &["--takeover"])
    }

    fn spawn(path: &std::path::Path, extra: &[&str]) -> Fulcrum {
        let path = path.to_owned();
        let mut child = Command::new(bin())
            .args(["run", "-c"])
            .arg(&path)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("FULCRUM_TEST_LOG").unwrap_or("info,fulcrum::pipeline=debug".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening")
                    && let Some(addr) = line.split("addr=").nth(1)
                    && let Some(t) = tx.take()
                {
                    let addr = addr.split_whitespace().next().unwrap().to_string();
                    let _ = t.send(addr);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!("fulcrum did not start: {}", log.lock().unwrap());
            }
        };
        Fulcrum {
            addr,
            child,
            log,
            path,
            _dir: None,
        }
    }

    /// The address listener `name` listens on (waits up to 5 s for it to be logged).
    pub fn listener_addr(&self, name: &str) -> SocketAddr {
        let needle = format!("listening listener={name} addr=");
        assert!(
            self.wait_log(&needle),
            "listener {name} not started:\n{}",
            self.log()
        );
        let log = self.log();
        let line = log.lines().rfind(|l| l.contains(&needle)).unwrap();
        let addr = line.split(&needle).nth(1).unwrap();
        addr.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// The address of the admin listener (waits up to 5 s for it to be logged).
    pub fn admin_addr(&self) -> SocketAddr {
        let needle = "admin listener: metrics at /metrics admin=";
        assert!(self.wait_log(needle), "no admin listener:\n{}", self.log());
        let log = self.log();
        let line = log.lines().rfind(|l| l.contains(needle)).unwrap();
        let addr = line.split(needle).nth(1).unwrap();
        addr.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// Writes `config` over the running config file and runs `fulcrum reload` on it.
    pub fn reload(&self, config: &str) -> std::process::Output {
        std::fs::write(&self.path, config).unwrap();
        Command::new(bin())
            .args(["reload", "-c"])
            .arg(&self.path)
            .output()
            .unwrap()
    }

    /// Sends `signal` (e.g. "HUP", "TERM") to the process.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} failed");
    }

    /// Waits up to `limit` for the process to exit; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to 5 s for `needle` to appear in the log.
    pub fn wait_log(&self, needle: &str) -> bool {
        self.wait_log_for(needle, Duration::from_secs(5))
    }

    /// Waits up to `limit` for `needle` to appear in the log.
    pub fn wait_log_for(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Peak resident memory of the process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Resident memory of the process now, in KiB.
    #[allow(dead_code)]
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

impl Drop for Fulcrum {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A killed process leaves its control socket behind (a graceful stop removes it).
        let _ = std::fs::remove_file(fulcrum::control::socket_path(None, &self.path));
    }
}

/// One listener in front of pool `app` (round robin, in the order given), one worker,
/// with `retries` as the body of `[pools.app.retries]`.
pub fn retry_config(backends: &[(&str, SocketAddr)], retries: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|(name, addr)| format!("  {{ name = \"{name}\", address = \"{addr}\" }},"))
        .collect();
    format!(
        "threads = 1\n\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\n[pools.app]\nalgorithm = \"round_robin\"\nbackends = [\n{}\n]\n\n[pools.app.retries]\n{retries}\n",
        list.join("\n")
    )
}

/// An HTTP/2 client connection to `addr` (prior knowledge), its connection driven by a
/// task of the current runtime.
pub async fn h2_client<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// A config with one listener in front of one pool of `backends`; `extra` is appended to
/// the pool table (e.g. `algorithm = "..."`), `top` goes at the top of the file.
pub fn config(top: &str, backends: &[&Backend], pool_extra: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("  {{ name = \"{}\", address = \"{}\" }},", b.name, b.addr))
        .collect();
    format!(
        "threads = 1\n{top}\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\n[pools.app]\n{pool_extra}\nbackends = [\n{}\n]\n",
        list.join("\n")
    )
}

/// A port on 127.0.0.1 free for both TCP and UDP now (DNS servers listen on both): the
/// kernel's pick for a TCP listener, kept if UDP can bind it too.
#[allow(dead_code)]
pub fn free_port_for_dns() -> u16 {
    for _ in 0..20 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP");
}

/// The Prometheus text of the admin listener at `admin`.
#[allow(dead_code)]
pub fn scrape(admin: SocketAddr) -> String {
    let (code, body, err) = curl(&[&format!("http://{admin}/metrics")]);
    assert_eq!(code, 0, "{err}");
    body
}

/// The value of the series written exactly as `series` (name and labels), if any.
#[allow(dead_code)]
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// The value of `series`, which must be there.
#[allow(dead_code)]
pub fn value(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// Runs curl with `args` (plus `-sS --max-time 10`); returns (exit code, stdout, stderr).
pub fn curl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of header `name` in a response head printed by `curl -D -` (last one).
pub fn header_of(head: &str, name: &str) -> Option<String> {
    head.lines()
        .rev()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
}

/// An address nothing listens on, kept so while the returned socket lives: the port is
/// bound but not listening, so connections to it are refused, and no other test's
/// listener can be given it meanwhile (a port merely freed could be: a test once found
/// its "dead" backend answering 200).
#[allow(dead_code)]
pub fn refused_address() -> (SocketAddr, socket2::Socket) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    s.bind(&any.into()).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    (addr, s)
}

/// Sends raw bytes and reads until the server closes (or `limit` passes).
pub fn raw(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A blocking reqwest-like helper: GET a URL with a fresh tokio runtime.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Starts `n` GETs of `url`, one every `gap`, all concurrently; counts `x-backend`.
pub fn spread(url: &str, n: usize, gap: Duration) -> std::collections::BTreeMap<String, usize> {
    let rt = rt();
    let c = client();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let req = c.get(url).send();
            tasks.push(tokio::spawn(async move {
                let r = req.await.unwrap();
                assert_eq!(r.status(), 200);
                r.headers()["x-backend"].to_str().unwrap().to_string()
            }));
            tokio::time::sleep(gap).await;
        }
        let mut counts = std::collections::BTreeMap::new();
        for t in tasks {
            *counts.entry(t.await.unwrap()).or_insert(0) += 1;
        }
        counts
    })
}

/// GETs `url` `n` times one after the other, pausing `gap` between them.
pub fn paced(url: &str, n: usize, gap: Duration) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        for (k, v) in tally(url, 1, &[]) {
            *counts.entry(k).or_insert(0) += v;
        }
        std::thread::sleep(gap);
    }
    counts
}

/// GETs `url` `n` times (sequentially, one keep-alive client) and counts `x-backend`.
pub fn tally(
    url: &str,
    n: usize,
    headers: &[(&str, &str)],
) -> std::collections::BTreeMap<String, usize> {
    let rt = rt();
    let c = client();
    rt.block_on(async {
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..n {
            let mut req = c.get(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            let name = r.headers()["x-backend"].to_str().unwrap().to_string();
            *counts.entry(name).or_insert(0) += 1;
        }
        counts
    })
}

/// Bytes of a line of [`text`].
pub const TEXT_LINE: usize = 53;

/// `len` bytes of an endless text from `offset`: lines of `TEXT_LINE` bytes, each its
/// number on 8 digits then ` the quick brown fox jumps over the lazy dog` (what
/// `/text/N` serves, and what every client rebuilds to check it byte for byte).
pub fn text(offset: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + TEXT_LINE);
    let mut line = offset / TEXT_LINE;
    let skip = offset % TEXT_LINE;
    while out.len() < len + skip {
        out.extend_from_slice(
            format!("{line:08} the quick brown fox jumps over the lazy dog\n").as_bytes(),
        );
        line += 1;
    }
    out.drain(..skip);
    out.truncate(len);
    out
}

fn text_response(n: usize, query: &str) -> Response<Body> {
    let param = |key: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .map(|v| {
                v.replace("%20", " ")
                    .replace("%2F", "/")
                    .replace("%3B", ";")
                    .replace("%22", "\"")
                    .replace("%3D", "=")
                    .replace("%2C", ",")
            })
    };
    const PIECE: usize = 64 * 1024;
    let stream = futures_util::stream::iter((0..n).step_by(PIECE)).map(move |at| {
        Ok::<_, std::io::Error>(Frame::data(Bytes::from(text(at, PIECE.min(n - at)))))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    let h = r.headers_mut();
    h.insert(
        "content-type",
        param("type")
            .unwrap_or("text/plain".into())
            .parse()
            .unwrap(),
    );
    if param("chunked").is_none() {
        h.insert("content-length", n.to_string().parse().unwrap());
    }
    for (key, header) in [
        ("etag", "etag"),
        ("cc", "cache-control"),
        ("ce", "content-encoding"),
        ("cr", "content-range"),
        ("vary", "vary"),
        ("sc", "set-cookie"),
        ("lm", "last-modified"),
    ] {
        if let Some(v) = param(key) {
            h.insert(header, v.parse().unwrap());
        }
    }
    r
}
