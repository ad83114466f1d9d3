//! Layer 4 with real software: redis-benchmark through Fulcrum across two redis-server
//! instances (installed by scripts/test).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::Fulcrum;
use common::redis::Redis;

/// Connections `r` has accepted since it started.
fn connections_received(r: &Redis) -> u64 {
    r.cli(&["info", "stats"])
        .lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
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
    let before = (connections_received(&r1), connections_received(&r2));
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
    let after = (connections_received(&r1), connections_received(&r2));
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
