//! The client of `bench/flood`: a flood from 50 client addresses at ten times a per-IP
//! rate limit, and a bystander under the limit whose latency is measured first alone,
//! then during the flood.
//!
//! `cargo bench --bench flood -- ADDR LIMIT_PER_SECOND SECONDS` (ADDR: the Fulcrum
//! listener). Each flood client keeps one connection from 127.0.1.(10+i) and sends
//! 10 x LIMIT requests per second; the bystander, from 127.0.2.1, sends 0.8 x LIMIT per
//! second. The limit is expected to allow a burst of LIMIT (one second's worth). Prints the bystander's p50 / p99 / max alone and during the flood, and how
//! many flood requests passed against what the limit allows.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `GET /small` every `gap` for `run` from `source`; statuses and latencies.
async fn client(
    addr: SocketAddr,
    source: IpAddr,
    gap: Duration,
    run: Duration,
) -> (Vec<u16>, Vec<Duration>, Duration) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind source");
    let mut stream = socket.connect(addr).await.expect("connect");
    let _ = stream.set_nodelay(true);
    let request = b"GET /small HTTP/1.1\r\nHost: bench\r\n\r\n";
    let mut ticks = tokio::time::interval(gap);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut statuses, mut latencies) = (Vec::new(), Vec::new());
    let mut buf = Vec::with_capacity(4096);
    let start = Instant::now();
    let mut last = Duration::ZERO;
    while start.elapsed() < run {
        ticks.tick().await;
        last = start.elapsed();
        let sent = Instant::now();
        stream.write_all(request).await.expect("write");
        buf.clear();
        statuses.push(read_response(&mut stream, &mut buf).await);
        latencies.push(sent.elapsed());
    }
    (statuses, latencies, last)
}

async fn read_response(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> u16 {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk).await.expect("read");
                assert!(n > 0, "closed mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            return head[9..12].parse().unwrap_or(0);
        }
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn quantile(all: &mut [Duration], q: f64) -> f64 {
    all.sort();
    let i = ((all.len() as f64 * q) as usize).min(all.len() - 1);
    all[i].as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (Some(addr), Some(limit), Some(seconds)) = (args.first(), args.get(1), args.get(2)) else {
        // `cargo test --all-targets` runs it without arguments: nothing to measure then.
        if args.is_empty() {
            println!("bench/flood runs this with a Fulcrum to flood; nothing to do alone");
            return;
        }
        eprintln!("usage: cargo bench --bench flood -- ADDR LIMIT_PER_SECOND SECONDS");
        std::process::exit(2);
    };
    let addr: SocketAddr = addr.parse().expect("ADDR");
    let limit: f64 = limit.parse().expect("LIMIT_PER_SECOND");
    let run = Duration::from_secs(seconds.parse().expect("SECONDS"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // The limit's burst is one second's worth (bench/flood's config).
        let bystander_gap = Duration::from_secs_f64(1.0 / (0.8 * limit));
        let bystander = IpAddr::from([127, 0, 2, 1]);
        let (statuses, mut alone, _) = client(addr, bystander, bystander_gap, run).await;
        assert!(statuses.iter().all(|&s| s == 200), "the bystander alone was refused");
        let flood: Vec<_> = (0..50u8)
            .map(|i| {
                let source = IpAddr::from([127, 0, 1, 10 + i]);
                tokio::spawn(client(addr, source, Duration::from_secs_f64(0.1 / limit), run))
            })
            .collect();
        let during = tokio::spawn(client(addr, bystander, bystander_gap, run));
        let (mut passed, mut sent, mut allowed) = (0usize, 0usize, 0.0);
        for f in flood {
            let (statuses, _, last) = f.await.unwrap();
            sent += statuses.len();
            passed += statuses.iter().filter(|&&s| s == 200).count();
            allowed += limit * last.as_secs_f64() + 1.0 + limit;
        }
        let (statuses, mut with_flood, _) = during.await.unwrap();
        let refused = statuses.iter().filter(|&&s| s != 200).count();
        println!("| bystander ({} req/s) | p50 ms | p99 ms | max ms | refused |", 0.8 * limit);
        println!("|---|---:|---:|---:|---:|");
        for (name, all, refused) in [("alone", &mut alone, 0), ("during the flood", &mut with_flood, refused)] {
            let max = all.iter().max().copied().unwrap_or_default().as_secs_f64() * 1000.0;
            println!(
                "| {name} | {:.3} | {:.3} | {max:.3} | {refused} |",
                quantile(all, 0.5),
                quantile(all, 0.99)
            );
        }
        println!(
            "\nflood: 50 addresses x {} req/s: {sent} sent, {passed} passed, {allowed:.0} allowed by the limit: ratio {:.3}",
            limit * 10.0,
            passed as f64 / allowed
        );
    });
}
