//! Active-active: two Fulcrum instances in front of the same pool share a stick table and a
//! rate limit through a real redis-server (`[shared]`). 200 clients alternating between
//! the instances stay on their backend; a limit holds across both within 10 %; Redis
//! killed: no request fails, limits become per instance, and after Redis returns both
//! catch up (entries learnt meanwhile hold on the other instance too); an instance
//! killed: the other's clients see no error; Sentinel: the master killed, the link
//! follows the promoted replica.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::redis::Redis;
use common::{Backend, Fulcrum};

/// The config of one instance: three backends under round robin, a stick table on the
/// `X-User` header, a limit of 100/s per `X-Api-Key` on `/api`; `redis`: the
/// `[shared]` lines.
fn config(backends: &[&Backend], redis: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ name = \"{}\", address = \"{}\" }}", b.name, b.addr))
        .collect();
    format!(
        "threads = 2\n[admin]\nbind = \"127.0.0.1:0\"\n\
         [shared]\n{redis}\ninterval = \"10ms\"\ntimeout = \"300ms\"\n\
         [rate_limits.api]\nkey = \"header:X-Api-Key\"\nrate = \"100/s\"\nburst = 10\n\
         [[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [[listeners.routes]]\nname = \"api\"\npath_prefix = \"/api\"\npool = \"app\"\nrate_limits = [\"api\"]\n\
         [pools.app]\nalgorithm = \"round_robin\"\nbackends = [{}]\n\
         [pools.app.sticky]\nmode = \"table\"\non = \"header:X-User\"\nexpire = \"10m\"\n",
        list.join(", ")
    )
}

fn server(redis: &Redis, prefix: &str) -> String {
    format!("redis = \"{}\"\nprefix = \"{prefix}\"", redis.url())
}

/// The backend that served `user` at `f`, or the failure.
async fn served(client: &reqwest::Client, f: &Fulcrum, user: &str) -> Result<String, String> {
    let r = client
        .get(f.url("/"))
        .header("X-User", user)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 200 {
        return Err(format!("status {}", r.status()));
    }
    Ok(r.headers()["x-backend"].to_str().unwrap().to_owned())
}

/// `users` (their names) each send `rounds` requests, alternating between `at` (starting
/// with the first), `pause` apart: the backends each user saw.
fn alternate(
    at: &[&Fulcrum],
    users: &[String],
    rounds: usize,
    pause: Duration,
) -> BTreeMap<String, Vec<Result<String, String>>> {
    common::rt().block_on(async {
        let client = common::client();
        let mut tasks = Vec::new();
        for (i, user) in users.iter().enumerate() {
            let client = client.clone();
            let user = user.clone();
            let urls: Vec<&Fulcrum> = at.to_vec();
            // Start the users a little apart.
            let start = Duration::from_millis((i % 50) as u64 * 2);
            let seen = async move {
                tokio::time::sleep(start).await;
                let mut seen = Vec::new();
                for round in 0..rounds {
                    seen.push(served(&client, urls[round % urls.len()], &user).await);
                    tokio::time::sleep(pause).await;
                }
                (user, seen)
            };
            tasks.push(seen);
        }
        futures_util::future::join_all(tasks)
            .await
            .into_iter()
            .collect()
    })
}

/// Asserts every user stayed on one backend, without a failure.
fn assert_stayed(seen: &BTreeMap<String, Vec<Result<String, String>>>) {
    for (user, backends) in seen {
        let first = backends[0]
            .as_ref()
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        for (round, b) in backends.iter().enumerate() {
            assert_eq!(
                b.as_ref()
                    .unwrap_or_else(|e| panic!("{user} round {round}: {e}")),
                first,
                "{user} moved in round {round}: {backends:?}"
            );
        }
    }
}

/// For `run`, two clients per instance send `GET /api` with one API key as fast as they
/// can: how many passed (200) and how many were refused (429); anything else fails.
fn flood(at: &[&Fulcrum], key: &str, run: Duration) -> (usize, usize) {
    let passed = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    common::rt().block_on(async {
        let mut tasks = Vec::new();
        for f in at.iter().chain(at.iter()) {
            let url = f.url("/api/x");
            let (passed, refused) = (Arc::clone(&passed), Arc::clone(&refused));
            let key = key.to_owned();
            tasks.push(tokio::spawn(async move {
                let client = common::client();
                let until = Instant::now() + run;
                while Instant::now() < until {
                    let r = client.get(&url).header("X-Api-Key", &key).send().await;
                    match r.map(|r| r.status().as_u16()) {
                        Ok(200) => passed.fetch_add(1, Ordering::Relaxed),
                        Ok(429) => refused.fetch_add(1, Ordering::Relaxed),
                        other => panic!("{other:?}"),
                    };
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    (
        passed.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    )
}

/// The limit lets through 100/s plus a burst of 10 (and the first request).
fn expected(run: Duration) -> f64 {
    100.0 * run.as_secs_f64() + 11.0
}

fn up(f: &Fulcrum) -> f64 {
    common::value(&common::scrape(f.admin_addr()), "fulcrum_shared_redis_up")
}

fn wait_up(f: &Fulcrum, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while up(f) != want {
        assert!(
            Instant::now() < deadline,
            "redis_up is not {want}: {}",
            f.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sticky_clients_and_a_rate_limit_hold_across_two_instances() {
    let redis = Redis::start();
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    let text = config(&[&a, &b, &c], &server(&redis, "t1"));
    let f1 = Fulcrum::start(&text);
    let f2 = Fulcrum::start(&text);
    wait_up(&f1, 1.0);
    wait_up(&f2, 1.0);

    // 200 users, 4 requests each, alternating instances 50 ms apart: every one stays.
    let users: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let seen = alternate(&[&f1, &f2], &users, 4, Duration::from_millis(50));
    assert_stayed(&seen);
    let spread: BTreeMap<&str, usize> = seen.values().fold(BTreeMap::new(), |mut m, v| {
        *m.entry(v[0].as_ref().unwrap().as_str()).or_default() += 1;
        m
    });
    assert_eq!(spread.len(), 3, "round robin spread them: {spread:?}");
    // The entries are in Redis too, with the table's expiry.
    let keys = redis.cli(&["--scan", "--pattern", "t1:stick:*"]);
    assert_eq!(keys.lines().count(), 200, "{keys}");
    let ttl: i64 = redis
        .cli(&["pttl", keys.lines().next().unwrap()])
        .trim()
        .parse()
        .unwrap();
    assert!((500_000..=600_000).contains(&ttl), "{ttl}");

    // One limit of 100/s for the key across both instances, within 10 %.
    let run = Duration::from_secs(3);
    let (passed, refused) = flood(&[&f1, &f2], "key-1", run);
    let want = expected(run);
    assert!(
        (passed as f64 - want).abs() <= want * 0.1,
        "{passed} passed, {refused} refused; the limit allows {want}"
    );
    let m = common::scrape(f1.admin_addr());
    assert!(common::value(&m, "fulcrum_shared_received_total{kind=\"rate\"}") > 0.0);
    assert!(common::value(&m, "fulcrum_shared_sent_total{kind=\"stick\"}") >= 100.0);
    assert_eq!(common::value(&m, "fulcrum_shared_dropped_total"), 0.0);

    // An instance killed: the other's clients see no error and stay where they were.
    let mut f1 = f1;
    let _ = f1.child.kill();
    let _ = f1.child.wait();
    let again = alternate(&[&f2], &users, 2, Duration::from_millis(0));
    for (user, backends) in &again {
        for b in backends {
            assert_eq!(
                b.as_ref().unwrap_or_else(|e| panic!("{user}: {e}")),
                seen[user][0].as_ref().unwrap(),
                "{user}"
            );
        }
    }
}

#[test]
fn without_redis_nothing_fails_limits_are_per_instance_and_both_catch_up_after() {
    let port = common::redis::free_port();
    let mut redis = Redis::start_on(port, &[]);
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    let text = config(&[&a, &b, &c], &server(&redis, "t2"));
    let f1 = Fulcrum::start(&text);
    let f2 = Fulcrum::start(&text);
    wait_up(&f1, 1.0);
    wait_up(&f2, 1.0);
    let before: Vec<String> = (0..50).map(|i| format!("before-{i}")).collect();
    let seen = alternate(&[&f1, &f2], &before, 2, Duration::from_millis(50));
    assert_stayed(&seen);

    // Redis killed while clients come and go: no request fails, sticky clients stay.
    redis.kill();
    let during = alternate(&[&f1, &f2], &before, 6, Duration::from_millis(100));
    assert_stayed(&during);
    for f in [&f1, &f2] {
        wait_up(f, 0.0);
        assert!(f.wait_log("shared state: Redis unreachable"), "{}", f.log());
    }
    // Each instance now limits on its own: about twice the limit passes.
    let run = Duration::from_secs(2);
    let (passed, _) = flood(&[&f1, &f2], "key-2", run);
    assert!(
        passed as f64 >= 1.6 * expected(run),
        "{passed} passed with the limit per instance"
    );
    // New clients meanwhile, on the first instance only.
    let new: Vec<String> = (0..50).map(|i| format!("during-{i}")).collect();
    let seen_new = alternate(&[&f1], &new, 1, Duration::ZERO);

    // Redis back (empty: no persistence): both reconnect and send what they learnt.
    let _redis = Redis::start_on(port, &[]);
    for f in [&f1, &f2] {
        wait_up(f, 1.0);
    }
    // Both instances have caught up when Redis holds every entry.
    let deadline = Instant::now() + Duration::from_secs(5);
    while _redis.cli(&["dbsize"]).trim() != "100" {
        assert!(Instant::now() < deadline, "{}", _redis.cli(&["dbsize"]));
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    // The clients that first came during the outage are known on the other instance.
    let after = alternate(&[&f2, &f1], &new, 2, Duration::from_millis(50));
    for (user, backends) in &after {
        for b in backends {
            assert_eq!(b, &seen_new[user][0], "{user}");
        }
    }
    // And the limit is shared again.
    let run = Duration::from_secs(2);
    let (passed, refused) = flood(&[&f1, &f2], "key-3", run);
    let want = expected(run);
    assert!(
        (passed as f64 - want).abs() <= want * 0.1,
        "{passed} passed, {refused} refused; the limit allows {want}"
    );
    assert!(f1.wait_log("shared state: connected to Redis"));
    let m = common::scrape(f1.admin_addr());
    assert_eq!(common::value(&m, "fulcrum_shared_redis_outages_total"), 1.0);
}

#[test]
fn with_sentinel_the_link_follows_the_promoted_replica() {
    let master = Redis::start();
    let replica_port = common::redis::free_port();
    let replica = Redis::start_on(
        replica_port,
        &["--replicaof", "127.0.0.1", &master.port.to_string()],
    );
    let sentinel = Redis::sentinel(master.port);
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    let shared = format!(
        "sentinels = [\"{}\"]\nmaster = \"mymaster\"\nprefix = \"t3\"",
        sentinel.url()
    );
    let text = config(&[&a, &b, &c], &shared);
    let f1 = Fulcrum::start(&text);
    let f2 = Fulcrum::start(&text);
    wait_up(&f1, 1.0);
    wait_up(&f2, 1.0);
    let users: Vec<String> = (0..20).map(|i| format!("s-{i}")).collect();
    assert_stayed(&alternate(
        &[&f1, &f2],
        &users,
        2,
        Duration::from_millis(50),
    ));

    // The master dies; Sentinel promotes the replica; both instances follow it.
    let mut master = master;
    master.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !replica.cli(&["role"]).starts_with("master") {
        assert!(
            Instant::now() < deadline,
            "no failover: {}",
            replica.cli(&["role"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for f in [&f1, &f2] {
        wait_up(f, 1.0);
    }
    let later: Vec<String> = (0..20).map(|i| format!("s2-{i}")).collect();
    assert_stayed(&alternate(
        &[&f1, &f2],
        &later,
        2,
        Duration::from_millis(50),
    ));
    assert!(
        replica
            .cli(&["--scan", "--pattern", "t3:stick:*"])
            .lines()
            .count()
            >= 20,
        "the new master holds the entries"
    );
}

#[test]
fn bad_shared_settings_are_config_errors_at_their_position() {
    let e = common::config_error("[shared]\nprefix = \"x\"\n");
    assert!(
        e.contains("needs either `redis` or both `sentinels` and `master`"),
        "{e}"
    );
    let e = common::config_error("[shared]\nredis = \"http://x\"\n");
    assert!(
        e.contains(":2:9") && e.contains("is not a Redis URL"),
        "{e}"
    );
    let e = common::config_error("[shared]\nredis = \"redis://127.0.0.1\"\nprefix = \"a b\"\n");
    assert!(e.contains(":3:10") && e.contains("shared.prefix"), "{e}");
    let e = common::config_error("[shared]\nredis = \"redis://127.0.0.1\"\ninterval = \"soon\"\n");
    assert!(e.contains(":3:12") && e.contains("shared.interval"), "{e}");
}
