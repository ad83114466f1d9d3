//! The admin API's HTTP side: which method and path do what, the bearer token, and the
//! JSON answers.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::{Admin, actions, state};
use crate::metrics::expose;

/// The largest request body the API reads.
const MAX_BODY: usize = 64 * 1024;

/// A refusal: its status and what to say.
pub(super) struct Refused(pub StatusCode, pub String);

impl Refused {
    pub(super) fn bad(message: impl Into<String>) -> Refused {
        Refused(StatusCode::BAD_REQUEST, message.into())
    }

    pub(super) fn not_found(message: impl Into<String>) -> Refused {
        Refused(StatusCode::NOT_FOUND, message.into())
    }
}

pub(super) async fn answer(req: Request<Incoming>, admin: &Admin) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if path == "/" || path == "/dashboard" {
        return match method {
            Method::GET | Method::HEAD => reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                super::DASHBOARD.to_owned(),
            ),
            _ => error(Refused(StatusCode::METHOD_NOT_ALLOWED, "use GET /".into())),
        };
    }
    if path == "/metrics" {
        return match method {
            Method::GET | Method::HEAD => reply(
                StatusCode::OK,
                expose::CONTENT_TYPE,
                expose::render(&admin.live),
            ),
            _ => error(Refused(
                StatusCode::METHOD_NOT_ALLOWED,
                "use GET /metrics".into(),
            )),
        };
    }
    if path == "/health" {
        return match method {
            Method::GET | Method::HEAD => health(admin),
            _ => error(Refused(
                StatusCode::METHOD_NOT_ALLOWED,
                "use GET /health".into(),
            )),
        };
    }
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    // Explaining changes nothing (beyond one turn of a rotating algorithm).
    let read_only =
        matches!(method, Method::GET | Method::HEAD) || segments.as_slice() == ["api", "explain"];
    if !read_only && let Err(refused) = authorize(&req, admin) {
        return error(refused);
    }
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(refused) => return error(refused),
    };
    let result = match (&method, segments.as_slice()) {
        (&Method::GET, ["api", "state"]) => Ok(state::state(&admin.live, &admin.rates)),
        (&Method::GET, ["api", "diff"]) => actions::diff(admin),
        (&Method::GET, ["api", "events"]) => Ok(json!({
            "events": crate::metrics::events::recent(crate::metrics::events::KEPT)
        })),
        (&Method::POST, ["api", "reload"]) => actions::apply(admin, "reload", None).await,
        (&Method::POST, ["api", "explain"]) => explain(admin, &body),
        (&Method::POST, ["api", "backends", pool, backend, action]) => {
            actions::backend(admin, pool, backend, action, &body).await
        }
        (&Method::POST, ["api", "backends", pool]) => actions::add(admin, pool, &body).await,
        (&Method::DELETE, ["api", "backends", pool, backend]) => {
            actions::remove(admin, pool, backend).await
        }
        (&Method::POST, ["api", "caches", name, "purge"]) => actions::purge(admin, name, &body),
        (&Method::POST, ["api", "node", action @ ("drain" | "ready")]) => {
            let drain = *action == "drain";
            let changed = admin.live.node.drain(drain);
            tracing::info!(action, changed, "node {action} (admin API)");
            Ok(json!({
                "ok": true,
                "changed": if changed { vec![format!("node: {}", if drain { "draining" } else { "ready" })] } else { Vec::new() },
            }))
        }
        _ => Err(Refused::not_found(format!(
            "no {method} {path}: see docs/admin.md for the endpoints"
        ))),
    };
    match result {
        Ok(value) => reply(StatusCode::OK, "application/json", format!("{value:#}\n")),
        Err(refused) => error(refused),
    }
}

/// `GET /health`: whether this node should take traffic (200 `ready`; 503 `draining`
/// or `unhealthy`, with the reasons), for VRRP daemons and other load balancers.
fn health(admin: &Admin) -> Response<Full<Bytes>> {
    let (readiness, reasons) = admin.live.node.readiness(&admin.live);
    let status = match readiness {
        crate::runtime::node::Readiness::Ready => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = json!({
        "status": readiness.name(),
        "reasons": reasons,
        "generation": admin.live.generation(),
    });
    reply(status, "application/json", format!("{body:#}\n"))
}

/// `POST /api/explain` with `{"method", "url", "headers": [[name, value]...], "client",
/// "listener"}`: the explanation against the running state.
fn explain(admin: &Admin, body: &Value) -> Result<Value, Refused> {
    let text = |k: &str| body.get(k).and_then(Value::as_str);
    let probe = crate::explain::Probe {
        method: text("method").unwrap_or("GET").to_owned(),
        url: text("url")
            .ok_or_else(|| Refused::bad("give the request's \"url\""))?
            .to_owned(),
        headers: body
            .get("headers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|h| {
                Some((
                    h.get(0)?.as_str()?.to_owned(),
                    h.get(1)?.as_str()?.to_owned(),
                ))
            })
            .collect(),
        client: text("client")
            .map(|c| {
                c.parse()
                    .map_err(|_| Refused::bad(format!("bad client address `{c}`")))
            })
            .transpose()?
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
        listener: text("listener").map(str::to_owned),
    };
    let lines =
        crate::explain::explain(&admin.live.snapshot(), &probe, true).map_err(Refused::bad)?;
    Ok(json!({ "ok": true, "explanation": lines }))
}

/// Changes need `Authorization: Bearer <token>` with the token of `token_file`.
fn authorize(req: &Request<Incoming>, admin: &Admin) -> Result<(), Refused> {
    let Some(token) = &admin.token else {
        return Err(Refused(
            StatusCode::FORBIDDEN,
            "the admin API is read-only: set [admin] token_file to allow changes".into(),
        ));
    };
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(Refused(StatusCode::UNAUTHORIZED, "wrong token".into())),
        None => Err(Refused(
            StatusCode::UNAUTHORIZED,
            "changes need `Authorization: Bearer <token>` (the token in [admin] token_file)".into(),
        )),
    }
}

/// Compares without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn read_body(req: Request<Incoming>) -> Result<Value, Refused> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| Refused::bad(format!("the request body is over {MAX_BODY} bytes")))?
        .to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| Refused::bad(format!("the body is not JSON: {e}")))
}

/// `%XX` escapes decoded (backend names are often addresses: `127.0.0.1%3A9001`).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn error(Refused(status, message): Refused) -> Response<Full<Bytes>> {
    reply(
        status,
        "application/json",
        format!("{:#}\n", json!({ "ok": false, "error": message })),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_and_comparing() {
        assert_eq!(percent_decode("127.0.0.1%3A9001"), "127.0.0.1:9001");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
