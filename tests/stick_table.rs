//! Stick tables with real clients: clients known by their address (curl from several
//! 127.0.0.0/8 sources), by a header, or by the application's own session cookie
//! (learnt from the `Set-Cookie` of the backend that created the session) stay on one
//! backend under round robin; a dead backend's clients move and stay on their new one;
//! the table survives a reload; HTTP/2 clients are kept the same way.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Backend, Fulcrum};

fn config(backends: &[&Backend], sticky: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ name = \"{}\", address = \"{}\" }}", b.name, b.addr))
        .collect();
    format!(
        "threads = 2\n[admin]\nbind = \"127.0.0.1:0\"\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [pools.app]\nalgorithm = \"round_robin\"\nbackends = [{}]\n[pools.app.sticky]\n{sticky}\n",
        list.join(", ")
    )
}

/// Which backend answered a GET of `path` with curl `args`.
fn served(f: &Fulcrum, path: &str, args: &[&str]) -> String {
    let url = f.url(path);
    let mut all = vec!["-s", "-o", "/dev/null", "-w", "%header{x-backend}"];
    all.extend_from_slice(args);
    all.push(&url);
    common::curl(&all).1
}

#[test]
fn clients_known_by_address_stay_on_one_backend_and_move_once_when_it_dies() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let c = Backend::start("c");
    let f = Fulcrum::start(&config(
        &[&a, &b, &c],
        "mode = \"table\"\non = \"source_ip\"\nexpire = \"10m\"",
    ));
    let sources: Vec<String> = (1..=12).map(|i| format!("127.0.4.{i}")).collect();
    let mut home = BTreeMap::new();
    for round in 0..5 {
        for s in &sources {
            let got = served(&f, "/", &["--interface", s]);
            let first = home.entry(s.clone()).or_insert_with(|| got.clone());
            assert_eq!(*first, got, "{s} moved in round {round}");
        }
    }
    let used: BTreeSet<_> = home.values().cloned().collect();
    assert_eq!(used.len(), 3, "clients were not spread: {home:?}");
    // c dies: its clients move once, to a backend they then keep; nobody else moves.
    drop(c);
    let mut moved = BTreeMap::new();
    for round in 0..3 {
        for s in &sources {
            let got = served(&f, "/", &["--interface", s]);
            assert!(got == "a" || got == "b", "{s} got `{got}`");
            if home[s] == "c" {
                let first = moved.entry(s.clone()).or_insert_with(|| got.clone());
                assert_eq!(*first, got, "{s} moved twice (round {round})");
            } else {
                assert_eq!(home[s], got, "{s} moved though its backend lives");
            }
        }
    }
    let m = common::scrape(f.admin_addr());
    assert_eq!(
        common::value(&m, r#"fulcrum_pool_stick_table_entries{pool="app"}"#),
        12.0
    );
}

#[test]
fn the_applications_session_cookie_is_learnt_over_http1_and_http2() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let f = Fulcrum::start(&config(
        &[&a, &b],
        "mode = \"learn\"\ncookie = \"JSESSIONID\"",
    ));
    // Each login creates a session on the backend round robin picks.
    let mut sessions = Vec::new();
    for _ in 0..6 {
        let (_, head, _) = common::curl(&["-s", "-i", &f.url("/login")]);
        let cookie = common::header_of(&head, "set-cookie").unwrap();
        let value = cookie.split(';').next().unwrap().to_owned();
        let backend = common::header_of(&head, "x-backend").unwrap();
        sessions.push((value, backend));
    }
    assert!(sessions.iter().any(|(_, b)| b == "a") && sessions.iter().any(|(_, b)| b == "b"));
    // Later requests carrying a session go where it was created, whatever the turn.
    for _ in 0..4 {
        for (cookie, backend) in &sessions {
            assert_eq!(&served(&f, "/", &["-b", cookie]), backend, "{cookie}");
            assert_eq!(
                &served(&f, "/", &["--http2-prior-knowledge", "-b", cookie]),
                backend,
                "{cookie} over HTTP/2"
            );
        }
    }
    // A session cookie Fulcrum never saw set is balanced as usual (and remembered).
    let unknown = served(&f, "/", &["-b", "JSESSIONID=forged"]);
    for _ in 0..4 {
        assert_eq!(served(&f, "/", &["-b", "JSESSIONID=forged"]), unknown);
    }
}

#[test]
fn a_header_keyed_table_survives_a_reload() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let sticky = "on = \"header:X-User\"";
    let text = config(&[&a, &b], sticky);
    let f = Fulcrum::start(&text);
    let users: Vec<String> = (0..8).map(|i| format!("X-User: user{i}")).collect();
    let home: Vec<String> = users.iter().map(|u| served(&f, "/", &["-H", u])).collect();
    assert!(
        home.iter().any(|h| h == "a") && home.iter().any(|h| h == "b"),
        "{home:?}"
    );
    for (u, h) in users.iter().zip(&home) {
        assert_eq!(&served(&f, "/", &["-H", u]), h);
    }
    // A reload that changes the pool (a weight) keeps the table.
    let out = f.reload(&text.replace("name = \"a\",", "name = \"a\", weight = 3,"));
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(Duration::from_millis(100));
    for (u, h) in users.iter().zip(&home) {
        assert_eq!(
            &served(&f, "/", &["-H", u]),
            h,
            "{u} moved across the reload"
        );
    }
    // Requests without the header are balanced as usual.
    let spread: BTreeSet<_> = (0..4).map(|_| served(&f, "/", &[])).collect();
    assert_eq!(spread.len(), 2);
}

#[test]
fn a_table_without_a_key_is_a_config_error() {
    let err = common::config_error(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nbackends = [{ address = \"127.0.0.1:9\" }]\n[pools.app.sticky]\nmode = \"table\"\n",
    );
    assert!(
        err.contains("fulcrum.toml:7:8") && err.contains("sticky mode `table` needs `on`"),
        "{err}"
    );
}

#[test]
fn tcp_connections_stick_by_source_address() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let text = config(&[&a, &b], "on = \"source_ip\"").replace(
        "pool = \"app\"\n[pools",
        "pool = \"app\"\nprotocol = \"tcp\"\n[pools",
    );
    let f = Fulcrum::start(&text);
    let mut homes = BTreeSet::new();
    for i in 1..=6 {
        let source = format!("127.0.5.{i}");
        let first = served(&f, "/", &["--interface", &source]);
        homes.insert(first.clone());
        for _ in 0..4 {
            assert_eq!(
                served(&f, "/", &["--interface", &source]),
                first,
                "{source}"
            );
        }
    }
    assert_eq!(homes.len(), 2, "sources were not spread");
    assert!(f.wait_log("sticky=hit"));
}

#[test]
fn a_prefixed_application_cookie_keeps_its_session_and_the_backend_sees_its_own_value() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let f = Fulcrum::start(&config(
        &[&a, &b],
        "mode = \"prefix\"\ncookie = \"JSESSIONID\"",
    ));
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let (_, head, _) = common::curl(&["-s", "-i", &f.url("/login")]);
        let cookie = common::header_of(&head, "set-cookie").unwrap();
        let pair = cookie.split(';').next().unwrap().to_owned();
        let backend = common::header_of(&head, "x-backend").unwrap();
        // JSESSIONID=<16 hex>~<the application's value>
        let value = pair.strip_prefix("JSESSIONID=").unwrap();
        assert_eq!(value.as_bytes()[16], b'~', "{pair}");
        assert!(value[17..].starts_with(&format!("{backend}-")), "{pair}");
        sessions.push((pair, backend));
    }
    assert!(sessions.iter().any(|(_, b)| b == "a") && sessions.iter().any(|(_, b)| b == "b"));
    for (pair, backend) in &sessions {
        for h2 in [false, true] {
            let url = f.url("/headers");
            let mut args = vec!["-s", "-b", pair.as_str()];
            if h2 {
                args.push("--http2-prior-knowledge");
            }
            args.push(&url);
            let seen = common::curl(&args).1;
            let own = &pair["JSESSIONID=".len() + 17..];
            assert!(
                seen.contains(&format!("cookie: JSESSIONID={own}")),
                "{backend} saw {seen}"
            );
            assert_eq!(&served(&f, "/", &["-b", pair.as_str()]), backend);
        }
    }
}
