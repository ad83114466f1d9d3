//! The dashboard page on the admin listener, in a real browser (Debian's Chromium driven
//! by Playwright for Python, tests/peers/dashboard.py): it loads with no console error,
//! a backend killed under load shows as down within 2 s of Fulcrum marking it down, and
//! its drain button drains a backend.

mod common;

use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Backend, Fulcrum, peers};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn the_dashboard_follows_the_backends_and_drains_one() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "dash-token").unwrap();
    let top = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n",
        token.display()
    );
    let health = "[pools.app.health]\ncheck = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nfall = 2\nrise = 2\n";
    let config = format!("{}{health}", common::config(&top, &[&a, &b], ""));
    let f = Fulcrum::start(&config);
    let admin = f.admin_addr();

    // Load: one client in a loop for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (url, stop) = (f.url("/"), stop.clone());
        std::thread::spawn(move || {
            let rt = common::rt();
            let client = common::client();
            rt.block_on(async {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(r) = client.get(&url).send().await {
                        let _ = r.bytes().await;
                    }
                }
            });
        })
    };

    let mut browser = peers::spawn(
        "dashboard.py",
        &[&format!("http://{admin}/"), "dash-token", "b", "a"],
    );
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut next = || lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(next(), "READY");

    drop(b);
    assert!(
        f.wait_log_for("backend is DOWN", Duration::from_secs(10)),
        "{}",
        f.log()
    );
    let marked = now_ms();
    let shown = next();
    let shown: u64 = shown
        .strip_prefix("DOWN ")
        .unwrap_or_else(|| panic!("expected DOWN, got {shown:?}"))
        .parse()
        .unwrap();
    assert!(
        shown <= marked + 2000,
        "the page showed the backend down {} ms after Fulcrum marked it",
        shown - marked
    );

    assert_eq!(next(), "DRAINED");
    let (_, state, _) = common::curl(&[&format!("http://{admin}/api/state")]);
    assert!(state.contains("\"draining\": true"), "{state}");
    let console = next();
    let rest: Vec<String> = std::iter::from_fn(|| lines.next().and_then(Result::ok)).collect();
    assert_eq!(console, "CONSOLE 0", "console errors: {rest:?}");
    assert!(browser.wait().unwrap().success());
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    // The page's changes are logged like any other.
    assert!(f.log().contains("admin: drain app/a"), "{}", f.log());
}
