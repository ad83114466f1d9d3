//! Prometheus metrics on the admin listener: requests counted by listener, route, pool
//! and backend as real clients send them, state gauges, counters that survive a reload,
//! an exposition that `promtool check metrics` accepts, and a real Prometheus server
//! scraping it and answering queries with the same numbers.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Fulcrum, scrape, value};

fn config(a: &Backend, b: &Backend, weight: u32) -> String {
    format!(
        r#"threads = 1
[admin]
bind = "127.0.0.1:0"

[[listeners]]
name = "web"
bind = "127.0.0.1:0"
pool = "app"

[[listeners.routes]]
name = "api"
path_prefix = "/api"
pool = "app"

[[listeners.routes]]
name = "gone"
path = "/gone"
respond = {{ status = 410, body = "gone\n" }}

[[listeners.routes]]
name = "broken"
path_prefix = "/broken"
pool = "down"

[pools.app]
algorithm = "round_robin"
backends = [
  {{ name = "a", address = "{}", weight = {weight} }},
  {{ name = "b", address = "{}" }},
]

[pools.down]
backends = [{{ name = "nobody", address = "127.0.0.1:9" }}]
"#,
        a.addr, b.addr
    )
}

fn get(f: &Fulcrum, path: &str, n: usize) {
    for _ in 0..n {
        let (code, _, err) = common::curl(&["-o", "/dev/null", &f.url(path)]);
        assert_eq!(code, 0, "{err}");
    }
}

#[test]
fn requests_are_counted_where_they_went_and_survive_a_reload() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let f = Fulcrum::start(&config(&a, &b, 1));
    let admin = f.admin_addr();
    get(&f, "/api/x", 10);
    get(&f, "/", 4);
    get(&f, "/gone", 3);
    get(&f, "/broken", 2);

    let m = scrape(admin);
    let web = r#"listener="web""#;
    assert_eq!(
        value(
            &m,
            &format!("fulcrum_listener_requests_total{{{web},class=\"2xx\"}}")
        ),
        14.0
    );
    assert_eq!(
        value(
            &m,
            &format!("fulcrum_listener_requests_total{{{web},class=\"4xx\"}}")
        ),
        3.0
    );
    assert_eq!(
        value(
            &m,
            &format!("fulcrum_listener_requests_total{{{web},class=\"5xx\"}}")
        ),
        2.0
    );
    assert_eq!(
        value(
            &m,
            &format!("fulcrum_listener_request_duration_seconds_count{{{web}}}")
        ),
        19.0
    );
    let route = |r: &str, class: &str| {
        value(
            &m,
            &format!("fulcrum_route_requests_total{{{web},route=\"{r}\",class=\"{class}\"}}"),
        )
    };
    assert_eq!(route("api", "2xx"), 10.0);
    assert_eq!(route("gone", "4xx"), 3.0);
    assert_eq!(route("broken", "5xx"), 2.0);
    assert_eq!(
        value(&m, r#"fulcrum_pool_requests_total{pool="app",class="2xx"}"#),
        14.0
    );
    assert_eq!(
        value(
            &m,
            r#"fulcrum_pool_requests_total{pool="down",class="5xx"}"#
        ),
        2.0
    );
    // Round robin over two backends: 7 each.
    for backend in ["a", "b"] {
        let s = format!(
            "fulcrum_backend_requests_total{{pool=\"app\",backend=\"{backend}\",class=\"2xx\"}}"
        );
        assert_eq!(value(&m, &s), 7.0);
        assert_eq!(
            value(
                &m,
                &format!("fulcrum_backend_up{{pool=\"app\",backend=\"{backend}\"}}")
            ),
            1.0
        );
    }
    assert_eq!(
        value(
            &m,
            r#"fulcrum_backend_circuit_state{pool="app",backend="a",state="closed"}"#
        ),
        1.0
    );
    assert_eq!(value(&m, "fulcrum_config_generation"), 1.0);
    promtool_accepts(&m);

    // A reload (a weight changes): every counter carries on from where it was.
    let out = f.reload(&config(&a, &b, 3));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    get(&f, "/api/y", 4);
    let m = scrape(admin);
    assert_eq!(value(&m, "fulcrum_config_generation"), 2.0);
    assert_eq!(
        value(
            &m,
            &format!("fulcrum_listener_requests_total{{{web},class=\"2xx\"}}")
        ),
        18.0
    );
    let api = format!("fulcrum_route_requests_total{{{web},route=\"api\",class=\"2xx\"}}");
    assert_eq!(value(&m, &api), 14.0);
    assert_eq!(
        value(&m, r#"fulcrum_pool_requests_total{pool="app",class="2xx"}"#),
        18.0
    );
    assert_eq!(
        value(&m, r#"fulcrum_backend_weight{pool="app",backend="a"}"#),
        3.0
    );
    let both: f64 = ["a", "b"]
        .iter()
        .map(|b| {
            value(
                &m,
                &format!(
                    "fulcrum_backend_requests_total{{pool=\"app\",backend=\"{b}\",class=\"2xx\"}}"
                ),
            )
        })
        .sum();
    assert_eq!(both, 18.0);

    // An unknown path is refused plainly, and says where the endpoints are listed.
    let (_, body, _) = common::curl(&[&format!("http://{admin}/nope")]);
    assert!(body.contains("docs/admin.md"), "{body}");
    let (_, body, _) = common::curl(&["-X", "POST", &format!("http://{admin}/metrics")]);
    assert!(body.contains("use GET /metrics"), "{body}");
}

/// `promtool check metrics` (Prometheus's own linter) finds nothing to say.
fn promtool_accepts(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is needed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A real Prometheus server, scraping every second, on a port of its own.
struct Prometheus {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: fulcrum\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        // Prometheus takes a fixed port: find a free one.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus) is needed");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// The value of `query` (a single number), once Prometheus has one.
    fn query(&self, query: &str) -> Option<f64> {
        let url = format!("http://{}/api/v1/query", self.addr);
        let (code, body, _) =
            common::curl(&["-G", &url, "--data-urlencode", &format!("query={query}")]);
        if code != 0 {
            return None;
        }
        // {"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.7e9,"14"]}]}}
        let value = body.split("\"value\":[").nth(1)?;
        let number = value.split('"').nth(1)?;
        number.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_the_same_numbers() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let f = Fulcrum::start(&config(&a, &b, 1));
    let prometheus = Prometheus::start(f.admin_addr());
    get(&f, "/api/x", 12);
    get(&f, "/gone", 2);
    let queries = [
        (r#"sum(fulcrum_listener_requests_total{class="2xx"})"#, 12.0),
        (
            r#"fulcrum_route_requests_total{route="gone",class="4xx"}"#,
            2.0,
        ),
        (r#"sum(fulcrum_backend_requests_total{pool="app"})"#, 12.0),
        (r#"count(fulcrum_backend_up{pool="app"} == 1)"#, 2.0),
        (r#"up{job="fulcrum"}"#, 1.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen: Vec<_> = queries.iter().map(|(q, _)| prometheus.query(q)).collect();
        if queries
            .iter()
            .zip(&seen)
            .all(|((_, want), got)| *got == Some(*want))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not see the expected values within 30 s: {:?}",
            queries
                .iter()
                .map(|(q, _)| *q)
                .zip(&seen)
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn tcp_connections_and_bytes_are_counted() {
    use std::io::{Read, Write};
    // A backend that answers each connection with its input reversed, then closes.
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = backend.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in backend.incoming() {
            let Ok(mut s) = s else { continue };
            let mut data = Vec::new();
            let _ = s.read_to_end(&mut data);
            data.reverse();
            let _ = s.write_all(&data);
        }
    });
    let f = Fulcrum::start(&format!(
        "threads = 1\n[admin]\nbind = \"127.0.0.1:0\"\n[[listeners]]\nname = \"db\"\nbind = \"127.0.0.1:0\"\nprotocol = \"tcp\"\npool = \"db\"\n[pools.db]\nbackends = [{{ name = \"d1\", address = \"{addr}\" }}]\n"
    ));
    let admin = f.admin_addr();
    for size in [10usize, 200, 3000] {
        let mut s = std::net::TcpStream::connect(f.addr).unwrap();
        s.write_all(&vec![b'x'; size]).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), size);
    }
    let want = [
        (
            r#"fulcrum_listener_relayed_connections_total{listener="db",protocol="tcp"}"#,
            3.0,
        ),
        (
            r#"fulcrum_listener_relayed_bytes_total{listener="db",protocol="tcp",direction="in"}"#,
            3210.0,
        ),
        (
            r#"fulcrum_listener_relayed_bytes_total{listener="db",protocol="tcp",direction="out"}"#,
            3210.0,
        ),
        (
            r#"fulcrum_backend_relayed_connections_total{pool="db",backend="d1"}"#,
            3.0,
        ),
    ];
    // A connection is counted when it ends, just after the client has read it all.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = scrape(admin);
        let got: Vec<f64> = want.iter().map(|(s, _)| value(&m, s)).collect();
        if want.iter().zip(&got).all(|((_, w), g)| w == g) {
            promtool_accepts(&m);
            break;
        }
        assert!(Instant::now() < deadline, "{got:?}\n{m}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
