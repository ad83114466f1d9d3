//! DNS service discovery against a real dnsmasq serving records that change during the
//! test: a name's addresses followed as they come and go (the backend that stays keeps
//! its counters), the last good set kept while the name server is down, SRV records
//! giving ports, weights and backups, and a name that does not resolve refused at load.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::dns::Dnsmasq;
use common::{Backend, Fulcrum, metric as value, scrape};

/// A dnsmasq answering from `hosts` (and `extra` options), with records valid 1 s, on
/// `port` or a free one.
fn dnsmasq(hosts: &Path, extra: &[String], port: Option<u16>) -> Dnsmasq {
    let mut options = vec![
        "--local-ttl=1".to_owned(),
        "--log-facility=/dev/null".to_owned(),
        // Names under svc.test not in the hosts file do not exist.
        "--local=/svc.test/".to_owned(),
        format!("--addn-hosts={}", hosts.display()),
    ];
    options.extend_from_slice(extra);
    // Ready once it answers (here: that the name does not exist).
    Dnsmasq::start(&options, port, |port| {
        let asked = fulcrum::discovery::dns::query(
            &[SocketAddr::from(([127, 0, 0, 1], port))],
            "ready.svc.test",
            fulcrum::discovery::dns::Kind::A,
            Duration::from_millis(200),
        );
        !matches!(asked, Err(fulcrum::discovery::dns::Failure::Unanswered(_)))
    })
}

/// Waits (up to 10 s) until the backends that answer `n` requests are `want`.
fn wait_for_backends(f: &Fulcrum, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = common::spread(&f.url("/"), 20, Duration::ZERO);
        let names: Vec<&str> = seen.keys().map(String::as_str).collect();
        if names == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {seen:?}, want {want:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_names_addresses_are_followed_and_the_last_good_set_kept() {
    let one = Backend::start_at("one", "127.0.0.2:0".parse().unwrap(), Duration::ZERO);
    let port = one.addr.port();
    let two = Backend::start_at(
        "two",
        format!("127.0.0.3:{port}").parse().unwrap(),
        Duration::ZERO,
    );
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.2 api.svc.test\n").unwrap();
    let dns = dnsmasq(&hosts, &[], None);
    let f = Fulcrum::start(&format!(
        r#"threads = 1
[admin]
bind = "127.0.0.1:0"
[resolver]
nameservers = ["127.0.0.1:{}"]
min_ttl = "1s"
[[listeners]]
bind = "127.0.0.1:0"
pool = "app"
[pools.app]
algorithm = "round_robin"
backends = [{{ name = "api", address = "api.svc.test:{port}", resolve = true }}]
"#,
        dns.port
    ));
    wait_for_backends(&f, &["one"]);
    let first = format!("api@127.0.0.2:{port}");
    let counted = |m: &str| {
        value(
            m,
            &format!(
                "fulcrum_backend_requests_total{{pool=\"app\",backend=\"{first}\",class=\"2xx\"}}"
            ),
        )
    };
    let before = counted(&scrape(f.admin_addr())).unwrap();
    assert!(before >= 20.0, "{before}");

    // A second address appears: both serve, the first keeps its counters.
    std::fs::write(&hosts, "127.0.0.2 api.svc.test\n127.0.0.3 api.svc.test\n").unwrap();
    dns.reload();
    wait_for_backends(&f, &["one", "two"]);
    assert!(counted(&scrape(f.admin_addr())).unwrap() > before);
    assert!(f.wait_log("DNS: the addresses changed"), "{}", f.log());

    // The name server goes away: the last addresses stay in use, and it is logged.
    let port_dns = dns.port;
    drop(dns);
    assert!(
        f.wait_log_for(
            "DNS resolution failed: keeping the last addresses found",
            Duration::from_secs(10)
        ),
        "{}",
        f.log()
    );
    wait_for_backends(&f, &["one", "two"]);

    // It comes back with the first address gone: only the second serves.
    std::fs::write(&hosts, "127.0.0.3 api.svc.test\n").unwrap();
    let _dns = dnsmasq(&hosts, &[], Some(port_dns));
    wait_for_backends(&f, &["two"]);
    assert!(f.wait_log("DNS resolution works again"), "{}", f.log());
    drop(two);
}

#[test]
fn srv_records_give_ports_weights_and_backups() {
    let a = Backend::start_at("a", "127.0.0.4:0".parse().unwrap(), Duration::ZERO);
    let b = Backend::start_at("b", "127.0.0.5:0".parse().unwrap(), Duration::ZERO);
    let spare = Backend::start_at("spare", "127.0.0.6:0".parse().unwrap(), Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.4 a.svc.test\n127.0.0.5 b.svc.test\n127.0.0.6 spare.svc.test\n",
    )
    .unwrap();
    let srv = |target: &str, port: u16, priority: u16, weight: u16| {
        format!("--srv-host=_http._tcp.svc.test,{target},{port},{priority},{weight}")
    };
    let dns = dnsmasq(
        &hosts,
        &[
            srv("a.svc.test", a.addr.port(), 0, 30),
            srv("b.svc.test", b.addr.port(), 0, 10),
            srv("spare.svc.test", spare.addr.port(), 1, 10),
        ],
        None,
    );
    let f = Fulcrum::start(&format!(
        r#"threads = 1
[admin]
bind = "127.0.0.1:0"
[resolver]
nameservers = ["127.0.0.1:{}"]
[[listeners]]
bind = "127.0.0.1:0"
pool = "app"
[pools.app]
algorithm = "weighted_round_robin"
backends = [{{ name = "web", srv = "_http._tcp.svc.test" }}]
"#,
        dns.port
    ));
    let m = scrape(f.admin_addr());
    for (backend, weight) in [(&a, 30.0), (&b, 10.0), (&spare, 10.0)] {
        let series = format!(
            "fulcrum_backend_weight{{pool=\"app\",backend=\"web@{}\"}}",
            backend.addr
        );
        assert_eq!(value(&m, &series), Some(weight), "{series}\n{m}");
    }
    // 3 to 1 between the two of the lowest priority; the other is a backup.
    let seen = common::spread(&f.url("/"), 40, Duration::ZERO);
    assert_eq!(seen.get("a"), Some(&30), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&10), "{seen:?}");
    assert_eq!(seen.get("spare"), None, "{seen:?}");
}

#[test]
fn a_name_that_does_not_resolve_is_a_config_error_at_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.2 api.svc.test\n").unwrap();
    let dns = dnsmasq(&hosts, &[], None);
    let file = dir.path().join("fulcrum.toml");
    std::fs::write(
        &file,
        format!(
            "[resolver]\nnameservers = [\"127.0.0.1:{}\"]\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nbackends = [{{ address = \"nope.svc.test:80\", resolve = true }}]\n",
            dns.port
        ),
    )
    .unwrap();
    let out = common::check_file(&file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("fulcrum.toml:7:")
            && err.contains("nope.svc.test:80 did not resolve: `nope.svc.test`: no such name"),
        "{err}"
    );
}
