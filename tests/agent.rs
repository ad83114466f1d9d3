//! Backend-reported load with real agents and backends: two backends on their own
//! loopback addresses, each with an agent (a TCP server answering one line, as
//! HAProxy's agent-check expects) on the same port; `least_load` sends a busy backend a
//! trickle and follows a changed report within two intervals; `drain`, `down` and `up`
//! act as the admin API would; a percentage scales the weight for other algorithms;
//! the load header of responses steers as well, over HTTP/1.1 and HTTP/2.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Backend, Fulcrum};

/// An agent at `ip:port`: answers every connection with its current line.
struct Agent {
    line: Arc<Mutex<String>>,
}

impl Agent {
    fn start(listener: std::net::TcpListener, line: &str) -> Agent {
        let line = Arc::new(Mutex::new(line.to_owned()));
        let current = Arc::clone(&line);
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let text = format!("{}\n", current.lock().unwrap());
                let _ = stream.write_all(text.as_bytes());
            }
        });
        Agent { line }
    }

    fn say(&self, line: &str) {
        *self.line.lock().unwrap() = line.to_owned();
    }
}

/// Two backends at 127.0.0.21 and 127.0.0.22, and an agent beside each, on one port.
fn setup(lines: [&str; 2]) -> (Vec<Backend>, Vec<Agent>, u16) {
    let ips: [IpAddr; 2] = [[127, 0, 0, 21].into(), [127, 0, 0, 22].into()];
    for _ in 0..50 {
        let first = std::net::TcpListener::bind(SocketAddr::new(ips[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        let Ok(second) = std::net::TcpListener::bind(SocketAddr::new(ips[1], port)) else {
            continue;
        };
        let agents = vec![
            Agent::start(first, lines[0]),
            Agent::start(second, lines[1]),
        ];
        let backends = ["a", "b"]
            .iter()
            .zip(ips)
            .map(|(name, ip)| Backend::start_at(name, SocketAddr::new(ip, 0), Duration::ZERO))
            .collect();
        return (backends, agents, port);
    }
    panic!("no port free on both addresses");
}

fn config(backends: &[Backend], algorithm: &str, agent: &str) -> String {
    format!(
        "threads = 1\n[admin]\nbind = \"127.0.0.1:0\"\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [pools.app]\nalgorithm = \"{algorithm}\"\nbackends = [{{ name = \"a\", address = \"{}\" }}, {{ name = \"b\", address = \"{}\" }}]\n\
         [pools.app.agent]\n{agent}\n",
        backends[0].addr, backends[1].addr
    )
}

fn share(f: &Fulcrum, n: usize) -> BTreeMap<String, usize> {
    common::paced(&f.url("/"), n, Duration::ZERO)
}

const INTERVAL: Duration = Duration::from_millis(250);

/// Waits two agent intervals (and a little), the time a changed report may take.
fn two_intervals() {
    std::thread::sleep(2 * INTERVAL + Duration::from_millis(100));
}

#[test]
fn least_load_gives_a_busy_backend_a_trickle_and_follows_a_changed_report() {
    let (backends, agents, port) = setup(["cpu=0.90", "cpu=0.10"]);
    let f = Fulcrum::start(&config(
        &backends,
        "least_load",
        &format!("port = {port}\ninterval = \"250ms\""),
    ));
    two_intervals();
    let got = share(&f, 200);
    let a = got.get("a").copied().unwrap_or(0);
    println!("a at 90 %, b at 10 %: {got:?}");
    assert!(a < 50, "the busy backend got {a} of 200: {got:?}");
    // The reports swap: within two intervals the traffic does too.
    agents[0].say("cpu=0.10");
    agents[1].say("cpu=0.90");
    two_intervals();
    let got = share(&f, 200);
    let b = got.get("b").copied().unwrap_or(0);
    println!("a at 10 %, b at 90 %: {got:?}");
    assert!(b < 50, "the busy backend got {b} of 200: {got:?}");
    let m = common::scrape(f.admin_addr());
    assert_eq!(
        common::value(
            &m,
            r#"fulcrum_backend_reported_load_permille{pool="app",backend="b"}"#
        ),
        900.0
    );
}

#[test]
fn drain_down_and_up_from_the_agent_act_like_the_admin_api() {
    let (backends, agents, port) = setup(["up", "up 100%"]);
    let f = Fulcrum::start(&config(
        &backends,
        "round_robin",
        &format!("port = {port}\ninterval = \"250ms\""),
    ));
    two_intervals();
    assert_eq!(share(&f, 10).len(), 2);
    agents[0].say("drain");
    two_intervals();
    assert_eq!(share(&f, 10).get("a"), None);
    assert!(f.wait_log("the agent says drain"));
    let state = common::curl(&["-s", &format!("http://{}/api/state", f.admin_addr())]).1;
    assert!(state.contains("\"agent\": \"drain\""), "{state}");
    agents[0].say("up");
    agents[1].say("down#disk full");
    two_intervals();
    assert_eq!(share(&f, 10).get("b"), None);
    assert_eq!(share(&f, 10).get("a"), Some(&10));
    // Up again: back in rotation.
    agents[1].say("up");
    two_intervals();
    assert_eq!(share(&f, 10).len(), 2);
}

#[test]
fn a_percentage_scales_the_weight_for_other_algorithms() {
    let (backends, _agents, port) = setup(["50%", "100%"]);
    let f = Fulcrum::start(&config(
        &backends,
        "weighted_round_robin",
        &format!("port = {port}\ninterval = \"250ms\""),
    ));
    two_intervals();
    let got = share(&f, 300);
    println!("a at 50 %, b at 100 %: {got:?}");
    assert_eq!(got.get("a"), Some(&100), "{got:?}");
    assert_eq!(got.get("b"), Some(&200), "{got:?}");
}

#[test]
fn the_load_header_of_responses_steers_over_http1_and_http2() {
    let (backends, _agents, _) = setup(["", ""]);
    *backends[0].load.lock().unwrap() = Some("cpu=0.95".into());
    *backends[1].load.lock().unwrap() = Some("cpu=0.05".into());
    let f = Fulcrum::start(&config(
        &backends,
        "least_load",
        "header = \"X-Backend-Load\"",
    ));
    // The first answers carry the reports; then the busy backend gets a trickle.
    share(&f, 10);
    let got = share(&f, 200);
    println!("by header, a at 95 %: {got:?}");
    assert!(got.get("a").copied().unwrap_or(0) < 50, "{got:?}");
    // HTTP/2 clients' responses report too.
    *backends[0].load.lock().unwrap() = Some("cpu=0.05".into());
    *backends[1].load.lock().unwrap() = Some("cpu=0.95".into());
    let mut b = 0;
    for _ in 0..100 {
        let (_, out, _) = common::curl(&[
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%header{x-backend}",
            &f.url("/"),
        ]);
        if out == "b" {
            b += 1;
        }
    }
    assert!(b < 40, "b answered {b} of 100 after reporting 95 %");
}

#[test]
fn an_agent_with_nothing_to_ask_is_a_config_error() {
    let err = common::config_error(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nalgorithm = \"least_load\"\nbackends = [{ address = \"127.0.0.1:9\" }]\n[pools.app.agent]\ninterval = \"1s\"\n",
    );
    assert!(
        err.contains("fulcrum.toml:4:8") && err.contains("neither `port` nor `header`"),
        "{err}"
    );
}
