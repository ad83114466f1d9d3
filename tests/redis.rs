//! Layer 4 with real software: redis-benchmark through Fulcrum across two redis-server
//! instances (installed by scripts/test).

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Fulcrum;

struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed by scripts/test (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { port, child }
    }

    fn connections_received(&self) -> u64 {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "info", "stats"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn redis_benchmark_through_fulcrum_across_two_servers() {
    let r1 = Redis::start();
    let r2 = Redis::start();
    let f = Fulcrum::start(&format!(
        "threads = 1\naccess_log = false\n[[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"tcp\"\npool = \"cache\"\n[pools.cache]\nalgorithm = \"least_connections\"\nbackends = [{{ address = \"127.0.0.1:{}\" }}, {{ address = \"127.0.0.1:{}\" }}]\n",
        r1.port, r2.port
    ));
    let port = f.addr.port().to_string();
    let before = (r1.connections_received(), r2.connections_received());
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-n",
            "20000",
            "-c",
            "10",
            "-t",
            "set,get,incr,lpush",
            "-q",
        ])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(!text.to_lowercase().contains("error"), "{text}");
    for test in ["SET", "GET", "INCR", "LPUSH"] {
        assert!(
            text.contains(&format!("{test}: ")),
            "{test} missing: {text}"
        );
    }
    let after = (r1.connections_received(), r2.connections_received());
    assert!(
        after.0 - before.0 >= 10 && after.1 - before.1 >= 10,
        "{before:?} -> {after:?}"
    );

    // Every client gets its own answers: one connection, one backend, consistent state.
    for i in 0..20 {
        let mut cli = Command::new("redis-cli")
            .args(["-p", &port])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(
            cli.stdin.take().unwrap(),
            "SET client{i} value{i}\nGET client{i}\nDEL client{i}"
        )
        .unwrap();
        let out = cli.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("OK\nvalue{i}\n1\n")
        );
    }
}
