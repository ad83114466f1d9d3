//! Live changes through the real binary: reloads under load lose no request and reset no
//! connection, traffic follows the new config within a second, a broken file changes
//! nothing and says why (FILE:LINE:COL), listeners are added and removed, SIGHUP reloads,
//! and SIGTERM lets a request in flight finish before exiting 0.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Backend, Fulcrum};

/// A config: one listener (plus `extra` at the end), pool `app` with `backends`
/// (name, weight), and a route to pool `other` when `route` is set.
fn config(backends: &[(&Backend, u32)], route: bool, extra: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|(b, w)| {
            format!(
                "{{ name = \"{}\", address = \"{}\", weight = {w} }}",
                b.name, b.addr
            )
        })
        .collect();
    let routes = if route {
        "[[listeners.routes]]\nname = \"other\"\npath_prefix = \"/other/\"\npool = \"app\"\n"
    } else {
        ""
    };
    format!(
        "threads = 2\naccess_log = false\n[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n{routes}\n{extra}\n[pools.app]\nalgorithm = \"round_robin\"\nbackends = [{}]\n",
        list.join(", ")
    )
}

/// One kept-alive HTTP/1.1 connection: sends GETs one after the other, reading each
/// response in full; any error or close is a failure.
struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Client {
            stream: BufReader::new(s),
        }
    }

    /// The status and `x-backend` of one GET, or why it failed (a response that closes
    /// the connection is a failure).
    fn get(&mut self, path: &str) -> Result<(u16, String), String> {
        match self.exchange(path)? {
            (_, _, true) => Err("the response closes the connection".into()),
            (status, backend, false) => Ok((status, backend)),
        }
    }

    /// One GET: status, `x-backend`, and whether the response closes the connection.
    fn exchange(&mut self, path: &str) -> Result<(u16, String, bool), String> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        self.stream
            .get_mut()
            .write_all(req.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let mut line = String::new();
        let n = self
            .stream
            .read_line(&mut line)
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed".into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or(format!("bad status line {line:?}"))?;
        let (mut length, mut backend, mut close) = (0usize, String::new(), false);
        loop {
            let mut h = String::new();
            self.stream
                .read_line(&mut h)
                .map_err(|e| format!("read: {e}"))?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                } else if k.eq_ignore_ascii_case("x-backend") {
                    backend = v.trim().to_string();
                } else if k.eq_ignore_ascii_case("connection") && v.trim() == "close" {
                    close = true;
                }
            }
        }
        let mut body = vec![0u8; length];
        self.stream
            .read_exact(&mut body)
            .map_err(|e| format!("body: {e}"))?;
        Ok((status, backend, close))
    }
}

#[test]
fn reloads_under_load_lose_nothing_and_traffic_follows() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let c = Backend::start("c");
    let f = Fulcrum::start(&config(&[(&a, 1), (&b, 1)], false, ""));
    let addr = f.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    // 50 kept-alive connections kept busy for the whole test.
    let load: Vec<_> = (0..50)
        .map(|_| {
            let (stop, served) = (Arc::clone(&stop), Arc::clone(&served));
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                let mut failures = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match client.get("/") {
                        Ok((200, _)) => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((status, _)) => failures.push(format!("status {status}")),
                        Err(e) => {
                            failures.push(e);
                            break;
                        }
                    }
                }
                failures
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // 20 reloads: weights changed, a backend added, one removed, a route added.
    let configs = [
        config(&[(&a, 3), (&b, 1)], false, ""),
        config(&[(&a, 1), (&b, 1), (&c, 1)], false, ""),
        config(&[(&a, 1), (&c, 2)], false, ""),
        config(&[(&a, 1), (&b, 1), (&c, 1)], true, ""),
    ];
    for i in 0..20 {
        let out = f.reload(&configs[i % configs.len()]);
        assert!(
            out.status.success(),
            "reload {i}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The last config sends everything to c: within a second, every request goes there.
    let out = f.reload(&config(&[(&c, 1)], true, ""));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("- backend a"), "{text}");
    let switched = Instant::now();
    let mut probe = Client::connect(addr);
    let mut followed = None;
    while switched.elapsed() < Duration::from_secs(3) {
        let (_, backend) = probe.get("/").unwrap();
        if backend == "c" {
            followed.get_or_insert(switched.elapsed());
        } else {
            followed = None;
        }
        if followed.is_some_and(|t| switched.elapsed() > t + Duration::from_millis(300)) {
            break;
        }
    }
    let followed = followed.expect("traffic never settled on the new backend");
    assert!(followed < Duration::from_secs(1), "took {followed:?}");
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = load.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        served.load(Ordering::Relaxed) > 500,
        "too little load: {}",
        served.load(Ordering::Relaxed)
    );
    assert!(f.log().contains("configuration reloaded"), "{}", f.log());
}

#[test]
fn a_broken_file_changes_nothing_and_says_where() {
    let a = Backend::start("a");
    let good = config(&[(&a, 1)], false, "");
    let f = Fulcrum::start(&good);
    let broken = good.replace(
        "algorithm = \"round_robin\"",
        "algorithm = \"round_robbin\"",
    );
    let out = f.reload(&broken);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let path = f.path.display().to_string();
    assert!(
        err.contains(&format!("{path}:10:13: unknown algorithm `round_robbin`")),
        "{err}"
    );
    assert!(err.contains("did you mean `round_robin`?"), "{err}");
    assert!(
        err.contains("the running configuration is unchanged"),
        "{err}"
    );
    // A file that is valid but whose listener cannot bind: refused by the process, the
    // old config stays.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = format!(
        "[[listeners]]\nname = \"extra\"\nbind = \"{}\"\npool = \"app\"\n",
        taken.local_addr().unwrap()
    );
    let out = f.reload(&config(&[(&a, 1)], false, &busy));
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));
    // SIGHUP with a broken file: logged with its position, nothing changes.
    std::fs::write(&f.path, &broken).unwrap();
    f.signal("HUP");
    assert!(f.wait_log("reload refused"), "{}", f.log());
    assert!(f.log().contains(":10:13: unknown algorithm"), "{}", f.log());
    let counts = common::tally(&f.url("/"), 4, &[]);
    assert_eq!(counts.get("a"), Some(&4));
}

#[test]
fn listeners_are_added_and_removed_and_sighup_reloads() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let f = Fulcrum::start(&config(&[(&a, 1)], false, ""));
    let extra = "[[listeners]]\nname = \"extra\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n";
    let out = f.reload(&config(&[(&a, 1)], false, extra));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("+ listener extra"));
    let second = f.listener_addr("extra");
    let mut kept = Client::connect(second);
    assert_eq!(kept.get("/").unwrap(), (200, "a".to_string()));
    // Removed: no new connections, but the one open keeps working.
    let out = f.reload(&config(&[(&a, 1)], false, ""));
    assert!(out.status.success());
    assert!(f.wait_log("listener closed"), "{}", f.log());
    let refused = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        TcpStream::connect(second).is_err()
    });
    assert!(refused, "the removed listener still accepts");
    assert_eq!(kept.get("/").unwrap(), (200, "a".to_string()));
    // SIGHUP re-reads the file.
    std::fs::write(&f.path, config(&[(&b, 1)], false, "")).unwrap();
    let before = f.log().matches("configuration reloaded").count();
    f.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.log().matches("configuration reloaded").count() == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        f.log().matches("configuration reloaded").count() > before,
        "{}",
        f.log()
    );
    assert_eq!(common::tally(&f.url("/"), 3, &[]).get("b"), Some(&3));
}

#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let slow = Backend::start("slow");
    let text = format!(
        "shutdown_grace = \"10s\"\n{}",
        config(&[(&slow, 1)], false, "")
    );
    let mut f = Fulcrum::start(&text);
    let addr = f.addr;
    let in_flight = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.stream
            .get_mut()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        c.exchange("/slow/3000")
    });
    // An idle kept-alive connection is closed politely.
    let mut idle = Client::connect(addr);
    assert_eq!(idle.get("/").unwrap().0, 200);
    std::thread::sleep(Duration::from_millis(500));
    f.signal("TERM");
    let result = in_flight.join().unwrap();
    // The 3 s request completes; its response says the connection closes.
    assert_eq!(result, Ok((200, "slow".to_string(), true)));
    let mut rest = Vec::new();
    let closed = idle.stream.read_to_end(&mut rest).is_ok();
    assert!(
        closed && rest.is_empty(),
        "the idle connection was not closed"
    );
    assert_eq!(f.wait_exit(Duration::from_secs(10)), Some(0), "{}", f.log());
    assert!(f.log().contains("stopped"), "{}", f.log());
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after the stop"
    );
}

#[test]
fn a_new_process_takes_the_sockets_over_under_load() {
    let a = Backend::start("a");
    let mut old = Fulcrum::start(&config(&[(&a, 1)], false, ""));
    let addr = old.addr;
    let stop = Arc::new(AtomicBool::new(false));
    // New connections for every request, and kept-alive ones that reconnect when a
    // response says `Connection: close` (as every HTTP client does).
    let load: Vec<_> = (0..8)
        .map(|i| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let mut served = 0;
                let mut kept: Option<Client> = None;
                let deadline = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if i % 2 == 0 {
                        let out = common::raw(
                            addr,
                            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                            Duration::from_secs(5),
                        );
                        if out.starts_with("HTTP/1.1 200") {
                            served += 1;
                        } else {
                            failures.push(format!("new connection: {out:?}"));
                        }
                        continue;
                    }
                    let client = kept.get_or_insert_with(|| Client::connect(addr));
                    match client.exchange("/") {
                        Ok((200, _, close)) => {
                            served += 1;
                            if close {
                                kept = None;
                            }
                        }
                        other => {
                            failures.push(format!("kept connection: {other:?}"));
                            kept = None;
                        }
                    }
                }
                (served, failures)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let new = old.take_over();
    assert_eq!(new.addr, addr, "the new process listens on the same socket");
    assert!(new.wait_log("listening socket taken over"), "{}", new.log());
    assert_eq!(
        old.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        old.log()
    );
    assert!(
        old.log().contains("listening sockets handed over"),
        "{}",
        old.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let mut served = 0;
    let mut failures = Vec::new();
    for t in load {
        let (s, f) = t.join().unwrap();
        served += s;
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} failed of {}: {:?}",
        failures.len(),
        served + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(served > 100, "too little load: {served}");
    // The new process serves, and answers `fulcrum reload` on the control socket.
    assert_eq!(
        common::tally(&format!("http://{addr}/"), 3, &[]).get("a"),
        Some(&3)
    );
    let out = new.reload(&config(&[(&a, 2)], false, ""));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_failed_takeover_leaves_the_old_process_serving() {
    let a = Backend::start("a");
    let old = Fulcrum::start(&config(&[(&a, 1)], false, ""));
    // The new config is valid but one of its listeners cannot bind: the new process
    // gets the sockets, fails to start, and the old one carries on.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = format!(
        "[[listeners]]\nname = \"extra\"\nbind = \"{}\"\npool = \"app\"\n",
        taken.local_addr().unwrap()
    );
    std::fs::write(&old.path, config(&[(&a, 1)], false, &busy)).unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["run", "--takeover", "-c"])
        .arg(&old.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the running Fulcrum keeps serving"), "{err}");
    assert!(
        old.wait_log("the new process did not start: still serving"),
        "{}",
        old.log()
    );
    assert_eq!(common::tally(&old.url("/"), 3, &[]).get("a"), Some(&3));
}

#[test]
fn a_listener_renamed_on_the_same_address_keeps_its_socket() {
    let a = Backend::start("a");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let named = |name: &str| {
        config(&[(&a, 1)], false, "").replace(
            "name = \"main\"\nbind = \"127.0.0.1:0\"",
            &format!("name = \"{name}\"\nbind = \"127.0.0.1:{port}\""),
        )
    };
    let f = Fulcrum::start(&named("main"));
    let mut kept = Client::connect(f.addr);
    assert_eq!(kept.get("/").unwrap(), (200, "a".to_string()));
    let out = f.reload(&named("web"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(f.wait_log("listener renamed"), "{}", f.log());
    assert_eq!(kept.get("/").unwrap(), (200, "a".to_string()));
    let mut fresh = Client::connect(f.addr);
    assert_eq!(fresh.get("/").unwrap(), (200, "a".to_string()));
}
