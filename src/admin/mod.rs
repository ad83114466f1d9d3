//! The admin listener (`[admin]`): Prometheus metrics, the state of every listener,
//! route, pool and backend as JSON, and runtime changes (drain, enable, weight, add and
//! remove backends, reload) for `fulcrum ctl` and scripts. Every endpoint is listed in
//! docs/admin.md.
//!
//! It runs on a thread of its own with its own event loop, so that a scrape or a state
//! query never delays a request on a worker, and it reads the same live snapshot the
//! workers serve from. Changes of backend state (drain, disable) are made in place, on
//! the backend's atomics; changes of configuration (weight, backends added or removed,
//! reload) are sent to the main thread, which applies them exactly as a reload
//! ([`Change`]), so that health checks, carried-over state and the printed diff are the
//! same. Changes need the bearer token of `token_file`; without one the API is
//! read-only. Every change is logged (target `fulcrum::admin`).

mod actions;
mod http;
mod state;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::runtime::Live;

pub use state::{Rates, status};

/// The dashboard page, shipped in the binary (no CDN, no external file).
const DASHBOARD: &str = include_str!("dashboard.html");

/// A change of configuration the main thread applies as a reload.
#[derive(Debug)]
pub struct Change {
    /// Who asks, for the log: `admin` or `DNS`.
    pub origin: &'static str,
    /// The new configuration; `None`: re-read the config file.
    pub config: Option<Config>,
    /// The outcome: the diff lines, or why nothing changed.
    pub reply: oneshot::Sender<Result<Vec<String>, Vec<String>>>,
}

/// What the admin API serves from.
#[derive(Debug)]
pub struct Admin {
    live: Arc<Live>,
    /// The bearer token changes need (`None`: read-only).
    token: Option<String>,
    /// The config file the process runs (for `diff`), if any.
    file: Option<PathBuf>,
    changes: mpsc::UnboundedSender<Change>,
    rates: Rates,
}

/// Binds the admin address. `SO_REUSEPORT` lets a process taking over (`run
/// --takeover`) bind it while the old one still serves it.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

/// Serves the admin API on `listener` (from [`bind`]) on a thread of its own. Reads the
/// token file now: an unreadable one is an error.
pub fn start(
    listener: std::net::TcpListener,
    live: Arc<Live>,
    file: Option<PathBuf>,
    changes: mpsc::UnboundedSender<Change>,
) -> std::io::Result<()> {
    let token = match live
        .snapshot()
        .config
        .admin
        .as_ref()
        .and_then(|a| a.token_file.clone())
    {
        Some(path) => Some(std::fs::read_to_string(&path)?.trim().to_owned()),
        None => None,
    };
    let admin = Arc::new(Admin {
        live,
        token,
        file,
        changes,
        rates: Rates::default(),
    });
    std::thread::Builder::new()
        .name("fulcrum-admin".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cannot start the admin event loop");
            runtime.block_on(serve(listener, admin));
        })?;
    Ok(())
}

async fn serve(listener: std::net::TcpListener, admin: Arc<Admin>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        tracing::error!("cannot register the admin listener");
        return;
    };
    // Requests per second, sampled every second for the state.
    let sampler = Arc::clone(&admin);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            sampler.rates.sample(&sampler.live.snapshot());
        }
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let admin = Arc::clone(&admin);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let admin = Arc::clone(&admin);
                async move { Ok::<_, Infallible>(http::answer(req, &admin).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
