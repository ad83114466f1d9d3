//! Forward authentication with a real auth service (a hyper server in the test, as an
//! application's own would be) and curl over HTTP/1.1 and HTTP/2: a 2xx lets the request
//! through with the service's `X-User` (and a client's own `X-User` never reaches the
//! backend); a refusal is passed on as the service wrote it (status, body,
//! `WWW-Authenticate`, `Location`); a service that does not answer in time gives 503;
//! the service is told what the request was.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Backend, Fulcrum};
use http_body_util::Full;
use hyper::{Request, Response};

/// The auth service: `Bearer good` is alice; `Bearer slow` takes 3 s; others are told
/// to log in. It keeps the last question's headers.
struct AuthService {
    addr: SocketAddr,
    last: Arc<Mutex<String>>,
    _runtime: tokio::runtime::Runtime,
}

impl AuthService {
    fn start() -> AuthService {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let last = Arc::new(Mutex::new(String::new()));
        let seen = Arc::clone(&last);
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let seen = Arc::clone(&seen);
                            async move {
                                let mut text = format!("{} {}\n", req.method(), req.uri());
                                for (k, v) in req.headers() {
                                    text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
                                }
                                *seen.lock().unwrap() = text;
                                let auth = req
                                    .headers()
                                    .get("authorization")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("");
                                let r = match auth {
                                    "Bearer good" => Response::builder()
                                        .status(200)
                                        .header("x-user", "alice")
                                        .body(Full::new(Bytes::new())),
                                    "Bearer slow" => {
                                        tokio::time::sleep(Duration::from_secs(3)).await;
                                        Response::builder()
                                            .status(200)
                                            .body(Full::new(Bytes::new()))
                                    }
                                    _ => Response::builder()
                                        .status(401)
                                        .header("www-authenticate", "Bearer realm=\"api\"")
                                        .header("x-internal", "not for clients")
                                        .body(Full::new(Bytes::from_static(b"log in first\n"))),
                                };
                                Ok::<_, Infallible>(r.unwrap())
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        AuthService {
            addr,
            last,
            _runtime: runtime,
        }
    }
}

#[test]
fn the_auth_service_decides_and_names_the_user() {
    let auth = AuthService::start();
    let a = Backend::start("a");
    let f = Fulcrum::start(&format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [[listeners.routes]]\nname = \"api\"\npath_prefix = \"/api\"\npool = \"app\"\n\
         forward_auth = {{ url = \"http://{}/check\", copy = [\"X-User\"], timeout = \"1s\" }}\n\
         [pools.app]\nbackends = [{{ name = \"a\", address = \"{}\" }}]\n",
        auth.addr, a.addr
    ));
    let backend_saw = || a.last_head.lock().unwrap().clone();
    for h2 in [false, true] {
        let get = |extra: &[&str]| {
            let url = f.url("/api/headers?x=1");
            let mut args = vec!["-s", "-i"];
            if h2 {
                args.push("--http2-prior-knowledge");
            }
            args.extend_from_slice(extra);
            args.push(&url);
            common::curl(&args).1
        };
        // Let through, with the user the service named (the client's own is dropped).
        let before = a.requests();
        let out = get(&["-H", "Authorization: Bearer good", "-H", "X-User: root"]);
        assert!(out.contains(" 200"), "{out}");
        assert_eq!(a.requests(), before + 1);
        let head = backend_saw();
        assert!(head.contains("x-user: alice"), "{head}");
        assert!(!head.contains("root"), "{head}");
        // The service was told what the request was.
        let asked = auth.last.lock().unwrap().clone();
        assert!(asked.starts_with("GET /check"), "{asked}");
        assert!(
            asked.contains("x-forwarded-uri: /api/headers?x=1"),
            "{asked}"
        );
        assert!(asked.contains("x-forwarded-method: GET"), "{asked}");
        assert!(asked.contains("authorization: Bearer good"), "{asked}");
        // Refused: the service's answer, as it wrote it (but not its other headers).
        let out = get(&["-H", "Authorization: Bearer bad", "-H", "X-User: root"]);
        assert!(out.contains(" 401"), "{out}");
        assert!(
            out.to_ascii_lowercase()
                .contains("www-authenticate: bearer realm=\"api\""),
            "{out}"
        );
        assert!(out.ends_with("log in first\n"), "{out}");
        assert!(!out.contains("not for clients"), "{out}");
        assert_eq!(
            a.requests(),
            before + 1,
            "a refused request reached the backend"
        );
        // No answer in time: 503.
        let out = get(&["-H", "Authorization: Bearer slow"]);
        assert!(out.contains(" 503"), "{out}");
        assert_eq!(a.requests(), before + 1);
    }
    // Other routes do not ask.
    let out = common::code(&[&f.url("/public")]);
    assert_eq!(out, "200");
    assert!(f.wait_log("denied=auth"));
}

#[test]
fn an_auth_url_that_is_not_http_is_a_config_error() {
    let err = common::config_error(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[[listeners.routes]]\npath = \"/\"\npool = \"app\"\nforward_auth = { url = \"ftp://auth/check\" }\n[pools.app]\nbackends = [{ address = \"127.0.0.1:9\" }]\n",
    );
    assert!(
        err.contains("fulcrum.toml:7:24") && err.contains("is not an auth service URL"),
        "{err}"
    );
}
