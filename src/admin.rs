//! The admin listener (`[admin] bind`): Prometheus metrics at `GET /metrics`.
//!
//! It runs on a thread of its own with its own event loop, so that a scrape never
//! delays a request on a worker, and it reads the same live snapshot the workers serve
//! from. Without `[admin]` nothing listens. Its address is read at start; a reload that
//! changes it is logged and takes effect at the next start.

use std::convert::Infallible;
use std::net::SocketAddr;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::metrics::expose;
use crate::runtime::Live;

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

/// Serves the admin API on `listener` (from [`bind`]) on a thread of its own.
pub fn start(listener: std::net::TcpListener, live: Arc<Live>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("fulcrum-admin".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cannot start the admin event loop");
            runtime.block_on(serve(listener, live));
        })?;
    Ok(())
}

async fn serve(listener: std::net::TcpListener, live: Arc<Live>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        tracing::error!("cannot register the admin listener");
        return;
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let live = Arc::clone(&live);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let live = Arc::clone(&live);
                async move { Ok::<_, Infallible>(answer(&req, &live)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(req: &Request<Incoming>, live: &Arc<Live>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            reply(StatusCode::OK, expose::CONTENT_TYPE, expose::render(live))
        }
        (_, "/metrics") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "use GET /metrics\n".into(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: the admin listener serves GET /metrics\n".into(),
        ),
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}
