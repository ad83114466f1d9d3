//! The response cache (`[caches.NAME]`, route `cache`) with curl and reqwest over
//! HTTP/1.1 and HTTP/2 against a real backend: what is stored and what is not
//! (Cache-Control, Set-Cookie, Authorization, Vary), hits with `Age` and `Cache-Status`,
//! HEAD and conditional requests answered from the cache, stale-while-revalidate with
//! background refreshes, invalidation by an unsafe method, 100 concurrent misses making
//! one backend request, and config errors.

mod common;

use common::{Backend, Fulcrum};

fn start(a: &Backend) -> Fulcrum {
    Fulcrum::start(&format!(
        "threads = 1\naccess_log = true\n[admin]\nbind = \"127.0.0.1:0\"\n[caches.main]\nmemory = \"4m\"\nmax_object_size = \"1m\"\n\
         [[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [[listeners.routes]]\npath_prefix = \"/\"\npool = \"app\"\ncache = \"main\"\n\
         [pools.app]\nbackends = [{{ name = \"a\", address = \"{}\" }}]\n",
        a.addr
    ))
}

/// curl `args`: (head, body).
fn get(args: &[&str]) -> (String, String) {
    let mut all = vec!["-s", "-D", "/dev/stderr"];
    all.extend_from_slice(args);
    let (_, body, head) = common::curl(&all);
    (head, body)
}

fn header(head: &str, name: &str) -> Option<String> {
    common::header_of(head, name)
}

fn status(head: &str) -> String {
    header(head, "cache-status").unwrap_or_default()
}

/// [`status`] with a hit's `ttl` counted from when the response was stored (ttl + Age):
/// a hit a whole second after its store (the clock may tick between two requests) reads
/// the same as one at once.
fn stored(head: &str) -> String {
    let s = status(head);
    let age: i64 = header(head, "age").map_or(0, |a| a.parse().unwrap());
    assert!(age <= 1, "{head}");
    match s.split_once("; ttl=") {
        Some((before, ttl)) => {
            let (n, rest) = ttl.split_once(';').map_or((ttl, ""), |(n, r)| (n, r));
            let n: i64 = n.parse().unwrap();
            let rest = if rest.is_empty() {
                String::new()
            } else {
                format!(";{rest}")
            };
            format!("{before}; ttl={}{rest}", n + age)
        }
        None => s,
    }
}

/// A temp dir holding the admin token [`purge`] sends.
fn token() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "purge-token\n").unwrap();
    (dir, token)
}

/// `POST /api/caches/main/purge` with `body`: how many responses were dropped.
fn purge(f: &Fulcrum, body: &str) -> u64 {
    let (code, out, err) = common::curl(&[
        "-X",
        "POST",
        "-H",
        "Authorization: Bearer purge-token",
        "--data",
        body,
        &format!("http://{}/api/caches/main/purge", f.admin_addr()),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["purged"].as_u64().unwrap_or_else(|| panic!("{out}"))
}

#[test]
fn responses_are_stored_and_served_as_cache_control_says() {
    let a = Backend::start("a");
    let f = start(&a);
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let url = f.url(&format!(
            "/text/3000?cc=max-age%3D60&etag=%22v1%22&v={version}"
        ));
        let (head, first) = get(&[version, &url]);
        assert_eq!(status(&head), "main; fwd=miss; stored", "{head}");
        let (head, second) = get(&[version, &url]);
        assert_eq!(stored(&head), "main; hit; ttl=60", "{head}");
        assert_eq!(header(&head, "content-length").as_deref(), Some("3000"));
        assert_eq!(first, second);
        assert!(first.as_bytes() == common::text(0, 3000));
        // HEAD and conditional requests are answered from the cache too.
        let (head, body) = get(&[version, "-I", &url]);
        assert!(
            status(&head).contains("hit") && body.contains("3000"),
            "{head}"
        );
        let (head, body) = get(&[version, "-H", "If-None-Match: \"v1\"", &url]);
        assert!(head.contains(" 304"), "{head}");
        assert!(body.is_empty());
    }
    let before = a.requests();
    assert_eq!(before, 2, "one backend request per protocol");

    // Not stored: each request goes to the backend.
    for (query, why) in [
        ("cc=no-store", "no-store"),
        ("cc=private%2C%20max-age%3D60", "private"),
        ("cc=max-age%3D60&sc=s%3D1", "a cookie set"),
        ("x=1", "no freshness, no validator"),
    ] {
        let url = f.url(&format!("/text/100?{query}"));
        let n = a.requests();
        let (head, _) = get(&[&url]);
        assert_eq!(status(&head), "main; fwd=miss", "{why}: {head}");
        get(&[&url]);
        assert_eq!(a.requests(), n + 2, "{why}");
    }
    // A request with credentials, or that says no-store, passes by.
    let url = f.url("/text/100?cc=max-age%3D60&k=auth");
    get(&["-H", "Authorization: Bearer x", &url]);
    let (head, _) = get(&[&url]);
    assert_eq!(status(&head), "main; fwd=miss; stored", "{head}");
    let n = a.requests();
    let (head, _) = get(&["-H", "Cache-Control: no-store", &url]);
    assert!(
        header(&head, "cache-status").is_none() || status(&head).contains("fwd"),
        "{head}"
    );
    assert_eq!(a.requests(), n + 1);

    // Vary: one variant per value.
    let url = f.url("/text/100?cc=max-age%3D60&vary=Accept-Language");
    for (lang, expected) in [
        ("en", "main; fwd=miss; stored"),
        ("en", "main; hit; ttl=60"),
        ("fr", "main; fwd=miss; stored"),
        ("fr", "main; hit; ttl=60"),
        ("en", "main; hit; ttl=60"),
    ] {
        let (head, _) = get(&["-H", &format!("Accept-Language: {lang}"), &url]);
        assert_eq!(stored(&head), expected, "{lang}: {head}");
    }

    // An unsafe method through the URL drops what is stored for it.
    let url = f.url("/text/100?cc=max-age%3D60&k=post");
    get(&[&url]);
    let (head, _) = get(&[&url]);
    assert!(status(&head).contains("hit"));
    get(&["-X", "POST", "--data-binary", "x", &url]);
    let (head, _) = get(&[&url]);
    assert_eq!(status(&head), "main; fwd=miss; stored", "{head}");
}

#[test]
fn concurrent_misses_make_one_backend_request() {
    let a = Backend::start("a");
    let f = start(&a);
    let url = f.url("/text/5000?cc=max-age%3D60&delay=300");
    let rt = common::rt();
    let bodies = rt.block_on(async {
        let client = common::client();
        let all = (0..100).map(|_| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let r = client.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap()
            }
        });
        futures_util::future::join_all(all).await
    });
    assert_eq!(
        a.requests(),
        1,
        "100 concurrent misses, one backend request"
    );
    assert!(bodies.iter().all(|b| b[..] == common::text(0, 5000)[..]));
    let m = common::scrape(f.admin_addr());
    let series = |outcome: &str| {
        common::value(
            &m,
            &format!("fulcrum_cache_requests_total{{cache=\"main\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(series("stored"), 1.0);
    assert_eq!(series("miss"), 1.0);
    assert_eq!(series("hit"), 99.0, "{m}");
    assert!(series("coalesced") >= 90.0, "{m}");
    assert_eq!(
        common::value(&m, "fulcrum_cache_entries{cache=\"main\"}"),
        1.0
    );
    assert!(
        f.wait_log("cache=hit") && f.wait_log("cache=miss"),
        "{}",
        f.log()
    );
}

#[test]
fn bad_cache_settings_are_config_errors_at_their_position() {
    let err = common::config_error(
        "[caches.main]\nkey = [\"host\", \"cookie\"]\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[[listeners.routes]]\npath = \"/\"\npool = \"app\"\ncache = \"other\"\n[pools.app]\nbackends = [{ address = \"127.0.0.1:9\" }]\n",
    );
    assert!(
        err.contains("fulcrum.toml:2:16") && err.contains("`cookie` is not a cache key part"),
        "{err}"
    );
    assert!(
        err.contains("fulcrum.toml:9:9") && err.contains("there is no cache `other`"),
        "{err}"
    );
}

#[test]
fn stale_responses_are_revalidated_and_served_when_the_backend_fails() {
    let a = Backend::start("a");
    let f = Fulcrum::start(&format!(
        "threads = 1\naccess_log = true\n[caches.main]\nstale_if_error = \"1h\"\n\
         [[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [[listeners.routes]]\npath_prefix = \"/\"\npool = \"app\"\ncache = \"main\"\n\
         [pools.app]\nbackends = [{{ name = \"a\", address = \"{}\" }}]\n",
        a.addr
    ));
    let versions = ["--http1.1", "--http2-prior-knowledge"];
    let url = |v: &str, extra: &str| {
        f.url(&format!(
            "/text/2000?cc=max-age%3D1{extra}&etag=%22v1%22&v={v}"
        ))
    };
    // Revalidation: stale after a second, the backend says 304, the stored body is
    // served (200) and fresh again.
    for v in versions {
        let (head, first) = get(&[v, &url(v, "")]);
        assert_eq!(status(&head), "main; fwd=miss; stored", "{head}");
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let (head, again) = get(&[v, &url(v, "")]);
        assert!(head.contains(" 200"), "{head}");
        assert_eq!(
            status(&head),
            "main; fwd=stale; fwd-status=304; stored",
            "{head}"
        );
        assert_eq!(first, again);
        let (head, _) = get(&[v, &url(v, "")]);
        assert!(status(&head).contains("hit"), "{head}");
    }
    assert!(f.wait_log("cache=revalidated"), "{}", f.log());
    // Also stored with must-revalidate, which forbids serving it stale.
    for v in versions {
        get(&[v, &url(v, "%2C%20must-revalidate")]);
    }
    std::thread::sleep(std::time::Duration::from_millis(2100));
    drop(a);
    for v in versions {
        let (head, body) = get(&[v, &url(v, "")]);
        assert!(head.contains(" 200"), "{v}: {head}");
        assert!(
            status(&head).contains("fwd=stale; fwd-status=502"),
            "{v}: {head}"
        );
        assert!(body.as_bytes() == common::text(0, 2000));
        let (head, _) = get(&[v, &url(v, "%2C%20must-revalidate")]);
        assert!(head.contains(" 502"), "{v}: {head}");
    }
    assert!(f.wait_log("cache=stale"), "{}", f.log());
}

#[test]
fn stale_while_revalidate_answers_at_once_and_refreshes_behind() {
    let a = Backend::start("a");
    let f = Fulcrum::start(&format!(
        "threads = 1\naccess_log = true\n[admin]\nbind = \"127.0.0.1:0\"\n\
         [caches.main]\nstale_while_revalidate = \"30s\"\n\
         [[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [[listeners.routes]]\npath_prefix = \"/\"\npool = \"app\"\ncache = \"main\"\n\
         [pools.app]\nbackends = [{{ name = \"a\", address = \"{}\" }}]\n",
        a.addr
    ));
    // Stale after two seconds (less the second the backend takes, counted in its age).
    // The backend takes 800 ms to answer each request: a stale answer that comes back
    // while the refresh is still waiting for it was not waited for.
    let cases = [
        // The response's own window; no validator: the refresh fetches it whole.
        (
            "max-age%3D2%2C%20stale-while-revalidate%3D30&delay=800",
            "whole",
        ),
        // The cache's window; a validator: the refresh is a conditional request (304).
        ("max-age%3D2&etag=%22v1%22&delay=800", "304"),
    ];
    for v in ["--http1.1", "--http2-prior-knowledge"] {
        for (query, how) in cases {
            let url = f.url(&format!("/text/2000?cc={query}&v={v}"));
            let (head, first) = get(&[v, &url]);
            assert_eq!(status(&head), "main; fwd=miss; stored", "{head}");
            let stored = header(&head, "x-request").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2500));
            let before = a.requests();
            let (head, stale) = get(&[v, &url]);
            let cache_status = status(&head);
            assert!(head.contains(" 200"), "{head}");
            assert!(
                cache_status.starts_with("main; hit; ttl=-")
                    && cache_status.ends_with("detail=stale-while-revalidate"),
                "{v} {how}: {head}"
            );
            assert_eq!(header(&head, "x-request").as_deref(), Some(&*stored));
            assert_eq!(first, stale);
            // Again while the refresh waits for the backend: stale, and no second one.
            let (head, _) = get(&[v, "-I", &url]);
            assert!(
                status(&head).ends_with("detail=stale-while-revalidate"),
                "{v} {how}: {head}"
            );
            // Then the refreshed response is served fresh.
            let mut fresh = None;
            for _ in 0..50 {
                let (head, body) = get(&[v, &url]);
                if !status(&head).contains("stale") {
                    fresh = Some((head, body));
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let (head, body) = fresh
                .unwrap_or_else(|| panic!("{v} {how}: the refresh was not stored: {}", f.log()));
            assert!(status(&head).starts_with("main; hit; ttl="), "{head}");
            assert_ne!(
                header(&head, "x-request"),
                Some(stored),
                "{v} {how}: {head}"
            );
            assert!(body.as_bytes() == common::text(0, 2000));
            assert_eq!(
                a.requests(),
                before + 1,
                "{v} {how}: one refresh: {}",
                f.log()
            );
        }
    }
    // must-revalidate forbids serving it stale, the cache's window or not.
    let url = f.url("/text/100?cc=max-age%3D1%2C%20must-revalidate&etag=%22m%22");
    get(&[&url]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (head, _) = get(&[&url]);
    assert_eq!(
        status(&head),
        "main; fwd=stale; fwd-status=304; stored",
        "{head}"
    );
    let m = common::scrape(f.admin_addr());
    let series = |outcome: &str| {
        common::value(
            &m,
            &format!("fulcrum_cache_requests_total{{cache=\"main\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(series("refresh"), 4.0, "{m}");
    assert!(series("stale") >= 8.0, "{m}");
    assert!(f.wait_log("cache=stale"), "{}", f.log());
}

#[test]
fn the_admin_api_purges_by_path_prefix_or_all() {
    let a = Backend::start("a");
    let (_dir, token) = token();
    let f = Fulcrum::start(&format!(
        "threads = 1\n[admin]\nbind = \"127.0.0.1:0\"\ntoken_file = {:?}\n[caches.main]\n\
         [[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [[listeners.routes]]\npath_prefix = \"/\"\npool = \"app\"\ncache = \"main\"\n\
         [pools.app]\nbackends = [{{ name = \"a\", address = \"{}\" }}]\n",
        token, a.addr
    ));
    let host = format!("127.0.0.1:{}", f.addr.port());
    let paths = ["/text/100", "/text/200", "/text/300"];
    for p in paths {
        get(&[&f.url(&format!("{p}?cc=max-age%3D60"))]);
    }
    let purge = |body: &str| purge(&f, body);
    let cached = |p: &str| {
        let (head, _) = get(&[&f.url(&format!("{p}?cc=max-age%3D60"))]);
        status(&head).contains("hit")
    };
    assert!(paths.iter().all(|p| cached(p)));
    assert_eq!(
        purge(&format!(
            "{{\"host\": \"{host}\", \"path\": \"/text/100\"}}"
        )),
        1
    );
    assert!(!cached("/text/100") && cached("/text/200"));
    assert_eq!(
        purge(&format!("{{\"host\": \"{host}\", \"prefix\": \"/text/\"}}")),
        3
    );
    // Asking again stores it again: one entry left for `all`.
    assert!(!cached("/text/200"));
    assert_eq!(purge("{\"all\": true}"), 1);
    assert_eq!(purge("{\"all\": true}"), 0);
    // The same through `fulcrum ctl`.
    get(&[&f.url("/text/100?cc=max-age%3D60")]);
    let admin = f.admin_addr().to_string();
    let token = token.to_str().unwrap();
    let out = std::process::Command::new(common::bin())
        .args([
            "ctl",
            "--admin",
            &admin,
            "--token-file",
            token,
            "purge",
            "main",
        ])
        .args(["--host", &host, "--path", "/text/100"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "purged 1");
}

#[test]
fn memory_stays_within_the_budget() {
    let a = Backend::start("a");
    let f = start(&a);
    // 60 objects of 100 KB: 6 MB through a 4 MiB cache.
    for i in 0..60 {
        let (head, body) = get(&[&f.url(&format!("/text/100000?cc=max-age%3D60&i={i}"))]);
        assert_eq!(body.len(), 100_000, "{head}");
    }
    let m = common::scrape(f.admin_addr());
    let bytes = common::value(&m, "fulcrum_cache_bytes{cache=\"main\"}");
    let entries = common::value(&m, "fulcrum_cache_entries{cache=\"main\"}");
    assert!(bytes <= (4 << 20) as f64, "{bytes} bytes held");
    assert!((30.0..60.0).contains(&entries), "{entries} entries");
    // The most recent ones are still there.
    let (head, _) = get(&[&f.url("/text/100000?cc=max-age%3D60&i=59")]);
    assert!(status(&head).contains("hit"), "{head}");
}

#[test]
fn a_disk_tier_keeps_what_memory_evicts_within_its_cap_and_across_restarts() {
    let a = Backend::start("a");
    let (dir, token) = token();
    let disk = dir.path().join("disk");
    let config = format!(
        "threads = 1\n[admin]\nbind = \"127.0.0.1:0\"\ntoken_file = {token:?}\n\
         [caches.main]\nmemory = \"1m\"\nmax_object_size = \"200k\"\ndisk = {disk:?}\ndisk_size = \"1m\"\n\
         [[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [[listeners.routes]]\npath_prefix = \"/\"\npool = \"app\"\ncache = \"main\"\n\
         [pools.app]\nbackends = [{{ name = \"a\", address = \"{}\" }}]\n",
        a.addr
    );
    let files = || -> Vec<u64> {
        std::fs::read_dir(&disk)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "entry"))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .collect()
    };
    let wait_files = |n: usize| {
        for _ in 0..100 {
            if files().len() == n {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("{} files on disk, not {n}", files().len());
    };
    let object = |f: &Fulcrum, i: usize| {
        // One host whatever the port (the key has the host).
        let url = f.url(&format!("/text/150000?cc=max-age%3D600&i={i}"));
        let (head, body) = get(&["-H", "Host: cache.test", &url]);
        assert!(body.as_bytes() == common::text(0, 150_000), "{head}");
        stored(&head)
    };
    let f = Fulcrum::start(&config);
    // 20 objects of 150 KB through 1 MiB of memory: memory keeps the last 6; the 14 it
    // evicts go on to disk, whose 1 MiB cap keeps the last 6 of those (8 to 13).
    for i in 0..20 {
        assert_eq!(object(&f, i), "main; fwd=miss; stored");
    }
    wait_files(6);
    let sizes = files();
    assert!(sizes.iter().sum::<u64>() <= 1 << 20, "{sizes:?}");
    let before = a.requests();
    let s = object(&f, 10);
    assert!(s.ends_with("; detail=disk"), "{s}");
    assert_eq!(object(&f, 19), "main; hit; ttl=600");
    assert_eq!(a.requests(), before, "answered from disk and memory");
    assert_eq!(object(&f, 0), "main; fwd=miss; stored", "dropped from disk");
    let m = common::scrape(f.admin_addr());
    assert_eq!(
        common::value(
            &m,
            "fulcrum_cache_requests_total{cache=\"main\",outcome=\"disk\"}"
        ),
        1.0,
        "{m}"
    );
    assert!(common::value(&m, "fulcrum_cache_disk_bytes{cache=\"main\"}") <= (1 << 20) as f64);
    drop(f);

    // A new process finds what the disk holds.
    let f = Fulcrum::start(&config);
    let before = a.requests();
    let found = object(&f, 12);
    assert!(
        found.starts_with("main; hit; ttl=") && found.ends_with("; detail=disk"),
        "{found}"
    );
    assert_eq!(a.requests(), before);
    // Purging drops the files too.
    assert!(purge(&f, "{\"all\": true}") >= 1);
    wait_files(0);
    assert_eq!(object(&f, 12), "main; fwd=miss; stored");

    // A directory Fulcrum cannot write is a config error at its position.
    let err = common::config_error(
        "[caches.main]\ndisk = \"/proc/fulcrum-cache\"\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nbackends = [{ address = \"127.0.0.1:9\" }]\n",
    );
    assert!(
        err.contains("fulcrum.toml:2:8") && err.contains("`caches.main.disk`"),
        "{err}"
    );
}
