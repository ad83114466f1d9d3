//! A backend dies under load: with health checks and retries on, no client request fails.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Backend, Fulcrum, client, rt};

const REQUESTS: usize = 20_000;
const CONNECTIONS: usize = 8;

#[test]
fn killing_one_of_three_backends_under_load_fails_no_request() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let c = Backend::start("c");
    let list: Vec<String> = [&a, &b, &c]
        .iter()
        .map(|x| format!("  {{ name = \"{}\", address = \"{}\" }},", x.name, x.addr))
        .collect();
    let f = Fulcrum::start(&format!(
        "threads = 1\naccess_log = false\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nalgorithm = \"round_robin\"\nbackends = [\n{}\n]\n[pools.app.health]\ncheck = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nfall = 2\nrise = 2\n[pools.app.retries]\nattempts = 2\nbudget = 50\n",
        list.join("\n")
    ));
    let done = Arc::new(AtomicUsize::new(0));
    let url = f.url("/");
    let progress = Arc::clone(&done);
    let load = std::thread::spawn(move || {
        let rt = rt();
        let c = client();
        rt.block_on(async {
            let tasks: Vec<_> = (0..CONNECTIONS)
                .map(|_| {
                    let (c, url, progress) = (c.clone(), url.clone(), Arc::clone(&progress));
                    tokio::spawn(async move {
                        let mut failed = Vec::new();
                        for _ in 0..REQUESTS / CONNECTIONS {
                            match c.get(&url).send().await {
                                Ok(r) if r.status() == 200 => {}
                                Ok(r) => failed.push(format!("status {}", r.status())),
                                Err(e) => failed.push(e.to_string()),
                            }
                            progress.fetch_add(1, Ordering::Relaxed);
                        }
                        failed
                    })
                })
                .collect();
            let mut failed = Vec::new();
            for t in tasks {
                failed.extend(t.await.unwrap());
            }
            failed
        })
    });
    // Kill "c" a third of the way through.
    while done.load(Ordering::Relaxed) < REQUESTS / 3 {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(c);
    let failed = load.join().unwrap();
    assert!(
        f.wait_log("backend is DOWN pool=app backend=c"),
        "{}",
        f.log()
    );
    let retried = f.log().matches("retrying the request").count();
    eprintln!(
        "{REQUESTS} requests, {} failed, {retried} retried; a={} b={}",
        failed.len(),
        a.requests(),
        b.requests()
    );
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        retried > 0,
        "the kill happened under load, so some requests were retried"
    );
}
