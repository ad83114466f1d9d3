//! IP allow and deny lists on listeners, with real clients on 127.0.0.0/8 addresses
//! (curl --interface): refused addresses are closed before anything is read and never
//! reach a backend; behind a PROXY protocol header the named client is what counts;
//! a reload changes the lists for new connections; refusals are counted.

mod common;

use std::time::Duration;

use common::{Backend, Fulcrum};

/// curl from `source`: the status, or 0 when the connection was closed without one.
fn status_from(f: &Fulcrum, source: &str) -> u16 {
    let (_, out, _) = common::curl(&[
        "--interface",
        source,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &f.url("/"),
    ]);
    out.trim().parse().unwrap_or(0)
}

fn config(a: &Backend, lists: &str) -> String {
    format!(
        "threads = 1\n[admin]\nbind = \"127.0.0.1:0\"\n[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n{lists}\n[pools.app]\nbackends = [{{ name = \"a\", address = \"{}\" }}]\n",
        a.addr
    )
}

#[test]
fn refused_addresses_never_reach_a_backend() {
    let a = Backend::start("a");
    let lists = "allow = [\"127.0.0.0/8\"]\ndeny = [\"127.0.0.3\", \"127.0.0.64/26\"]";
    let f = Fulcrum::start(&config(&a, lists));
    assert_eq!(status_from(&f, "127.0.0.2"), 200);
    assert_eq!(status_from(&f, "127.0.0.1"), 200);
    for refused in ["127.0.0.3", "127.0.0.64", "127.0.0.100", "127.0.0.127"] {
        assert_eq!(status_from(&f, refused), 0, "{refused}");
    }
    assert_eq!(status_from(&f, "127.0.0.128"), 200);
    assert_eq!(a.requests(), 3, "refused clients reached the backend");
    let m = common::scrape(f.admin_addr());
    assert_eq!(
        common::value(
            &m,
            r#"fulcrum_listener_denied_connections_total{listener="web"}"#
        ),
        4.0
    );

    // A reload lifts the deny list for new connections.
    let out = f.reload(&config(&a, "allow = [\"127.0.0.0/8\"]"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(status_from(&f, "127.0.0.3"), 200);
}

#[test]
fn behind_a_proxy_header_the_client_it_names_is_checked() {
    let a = Backend::start("a");
    let f = Fulcrum::start(&config(
        &a,
        "accept_proxy = true\ndeny = [\"10.9.9.0/24\", \"2001:db8::/32\"]",
    ));
    let request = |source: &str| {
        let proxy = if source.contains(':') {
            format!("PROXY TCP6 {source} ::1 5000 80\r\n")
        } else {
            format!("PROXY TCP4 {source} 127.0.0.1 5000 80\r\n")
        };
        let raw = format!("{proxy}GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        common::raw(f.addr, raw.as_bytes(), Duration::from_secs(5))
    };
    assert!(request("10.8.8.8").starts_with("HTTP/1.1 200"));
    assert_eq!(request("10.9.9.9"), "");
    assert_eq!(request("2001:db8::5"), "");
    assert!(request("2001:db9::5").starts_with("HTTP/1.1 200"));
    assert_eq!(a.requests(), 2);
}

#[test]
fn a_bad_block_is_a_config_error_at_its_position() {
    let err = common::config_error(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\ndeny = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\n[pools.app]\nbackends = [{ address = \"127.0.0.1:9\" }]\n",
    );
    assert!(
        err.contains("fulcrum.toml:4:23") && err.contains("`/40` is not a prefix length"),
        "{err}"
    );
}
