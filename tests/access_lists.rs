//! IP allow and deny lists on listeners, with real clients on 127.0.0.0/8 addresses
//! (curl --interface): refused addresses are closed before anything is read and never
//! reach a backend; behind a PROXY protocol header the named client is what counts;
//! a reload changes the lists for new connections; refusals are counted.

mod common;

use std::time::Duration;

use common::{Backend, Fulcrum};

/// curl from `source`: the status, or 0 when the connection was closed without one.
fn status_from(f: &Fulcrum, source: &str) -> u16 {
    let out = common::code(&["--interface", source, &f.url("/")]);
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

#[test]
fn a_deny_file_is_followed_while_running_and_a_bad_one_changes_nothing() {
    let a = Backend::start("a");
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("deny.lst");
    std::fs::write(&list, "# abusers\n127.0.0.3\n127.0.0.64/26  # a range\n").unwrap();
    let f = Fulcrum::start(&config(&a, &format!("deny_file = \"{}\"", list.display())));
    assert_eq!(status_from(&f, "127.0.0.2"), 200);
    assert_eq!(status_from(&f, "127.0.0.3"), 0);
    assert_eq!(status_from(&f, "127.0.0.70"), 0);
    // The file changes: within a few seconds the new list is in force.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&list, "127.0.0.4\n").unwrap();
    let moved = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        status_from(&f, "127.0.0.4") == 0
    });
    assert!(moved, "the new list was not taken up");
    assert_eq!(status_from(&f, "127.0.0.3"), 200);
    assert!(f.wait_log("address lists reloaded"));
    // A line that does not parse: logged, and the lists in force stay.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&list, "127.0.0.5\n127.0.0.0/99\n").unwrap();
    assert!(f.wait_log("deny.lst:2"));
    assert_eq!(status_from(&f, "127.0.0.4"), 0);
    assert_eq!(status_from(&f, "127.0.0.5"), 200);
}

#[test]
fn a_bad_list_file_is_a_config_error_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("allow.lst"),
        "10.0.0.0/8\n\nnot-an-address\n",
    )
    .unwrap();
    let file = dir.path().join("fulcrum.toml");
    std::fs::write(
        &file,
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\nallow_file = \"allow.lst\"\n[pools.app]\nbackends = [{ address = \"127.0.0.1:9\" }]\n",
    )
    .unwrap();
    let out = common::check_file(&file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("fulcrum.toml:4:14")
            && err.contains("allow.lst:3: `not-an-address` is not an IP address"),
        "{err}"
    );
}

#[test]
fn a_routes_lists_answer_403_and_keep_others_out_of_the_backend() {
    let a = Backend::start("a");
    let f = Fulcrum::start(&format!(
        "threads = 1\n[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [[listeners.routes]]\nname = \"admin\"\npath_prefix = \"/admin\"\npool = \"app\"\nallow = [\"127.0.0.0/24\"]\ndeny = [\"127.0.0.9\"]\n\
         [pools.app]\nbackends = [{{ name = \"a\", address = \"{}\" }}]\n",
        a.addr
    ));
    let get = |source: &str, path: &str, h2: bool| {
        let url = f.url(path);
        let mut args = vec!["--interface", source];
        if h2 {
            args.push("--http2-prior-knowledge");
        }
        args.push(&url);
        common::code(&args)
    };
    for h2 in [false, true] {
        assert_eq!(get("127.0.0.2", "/admin/x", h2), "200");
        assert_eq!(get("127.0.0.9", "/admin/x", h2), "403");
        assert_eq!(get("127.0.1.2", "/admin/x", h2), "403");
        assert_eq!(get("127.0.1.2", "/public", h2), "200");
    }
    assert_eq!(a.requests(), 4);
    assert!(f.wait_log("denied=ip"));
}

#[test]
fn behind_trusted_proxies_the_forwarded_client_is_checked_limited_and_logged() {
    let a = Backend::start("a");
    let f = Fulcrum::start(&format!(
        "threads = 1\n[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         trusted_proxies = [\"127.0.0.1\"]\ndeny = [\"198.51.100.7\"]\nrate_limits = [\"per-client\"]\n\
         [pools.app]\nbackends = [{{ name = \"a\", address = \"{}\" }}]\n\
         [rate_limits.per-client]\nrate = \"2/m\"\nburst = 1\n",
        a.addr
    ));
    let get = |source: &str, xff: &str, h2: bool| {
        let header = format!("X-Forwarded-For: {xff}");
        let url = f.url("/headers");
        let mut args = vec![
            "-s",
            "-w",
            "\n%{http_code}",
            "--interface",
            source,
            "-H",
            &header,
        ];
        if h2 {
            args.push("--http2-prior-knowledge");
        }
        args.push(&url);
        let out = common::curl(&args).1;
        let (body, code) = out.rsplit_once('\n').unwrap();
        (code.to_owned(), body.to_owned())
    };
    // A denied client behind the trusted proxy: 403, though the proxy itself is fine.
    assert_eq!(get("127.0.0.1", "198.51.100.7", false).0, "403");
    assert_eq!(get("127.0.0.1", "198.51.100.7", true).0, "403");
    // An allowed one: its request goes on with the chain extended.
    let (code, head) = get("127.0.0.1", "203.0.113.5, 198.51.100.8", false);
    assert_eq!(code, "200");
    assert!(
        head.contains("x-forwarded-for: 203.0.113.5, 198.51.100.8, 127.0.0.1"),
        "{head}"
    );
    // Rate limits count the forwarded client: 198.51.100.8 has used 1 of 2; a second
    // client behind the same proxy has its own.
    assert_eq!(get("127.0.0.1", "198.51.100.8", true).0, "200");
    assert_eq!(get("127.0.0.1", "198.51.100.8", false).0, "429");
    assert_eq!(get("127.0.0.1", "198.51.100.9", false).0, "200");
    assert!(f.wait_log("client=198.51.100.9:"), "{}", f.log());
    // An untrusted peer's header is ignored: 127.0.0.2 is the client, not 198.51.100.7.
    assert_eq!(get("127.0.0.2", "198.51.100.7", false).0, "200");
}
