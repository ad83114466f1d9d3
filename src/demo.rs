//! `fulcrum demo`: three small backends on loopback, each answering with its own name,
//! and a balancer in front of them, so a newcomer sees balancing with no setup at all.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::balance::Algorithm;
use crate::config::BackendConfig;
use crate::{cli, listener};

/// Runs the demo until Ctrl-C; returns the exit code.
pub fn run(first_port: u16) -> i32 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("cannot start the demo backends");
    let mut backends = Vec::new();
    for i in 1..=3 {
        let name = format!("backend-{i}");
        match runtime.block_on(spawn_backend(name.clone())) {
            Ok(address) => backends.push(BackendConfig {
                name,
                address,
                weight: 1,
                backup: false,
                source: None,
            }),
            Err(e) => {
                eprintln!("error: cannot start demo backend {i}: {e}");
                return 1;
            }
        }
    }
    let signals = cli::Signals::install();
    let listen = free_port(first_port);
    let config = cli::single_pool_config(
        listen,
        backends.clone(),
        Algorithm::RoundRobin,
        Some(1),
        true,
    );
    let running = match listener::start(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let addr = running.listeners()[0].1;
    println!(
        "Fulcrum demo: a balancer on http://{addr}/ in front of three backends (round robin):"
    );
    for b in &backends {
        println!("  {:<10} http://{}/", b.name, b.address);
    }
    println!();
    println!("Try it from another terminal:");
    println!("  for i in 1 2 3 4 5 6; do curl -s http://{addr}/; done");
    println!();
    println!(
        "Each request is logged below with the backend that served it. Ctrl-C stops the demo."
    );
    signals.wait();
    tracing::info!("stopping the demo");
    drop(running);
    drop(runtime);
    tracing::info!("stopped");
    0
}

/// The first free loopback port from `first` on (or any free port).
fn free_port(first: u16) -> SocketAddr {
    (first..first.saturating_add(20))
        .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
        .find(|a| listener::is_free(*a))
        .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
}

/// Starts one backend on an ephemeral loopback port answering "Hello from NAME".
async fn spawn_backend(name: String) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let body = Bytes::from(format!("Hello from {name} ({addr})\n"));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}
