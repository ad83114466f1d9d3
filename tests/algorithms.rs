//! Every algorithm through the real proxy: which backend answered, counted over many
//! requests from a real client.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Backend, Fulcrum, paced, spread, tally};

fn three() -> [Backend; 3] {
    [
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    ]
}

fn weighted(bs: &[Backend], weights: &[u32], extra: &str) -> Fulcrum {
    let list: Vec<String> = bs
        .iter()
        .zip(weights)
        .map(|(b, w)| {
            format!(
                "  {{ name = \"{}\", address = \"{}\", weight = {w} }},",
                b.name, b.addr
            )
        })
        .collect();
    Fulcrum::start(&format!(
        "threads = 1\naccess_log = false\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\n{extra}\nbackends = [\n{}\n]\n",
        list.join("\n")
    ))
}

fn count(map: &BTreeMap<String, usize>, name: &str) -> usize {
    map.get(name).copied().unwrap_or(0)
}

#[test]
fn round_robin_takes_turns() {
    let bs = three();
    let f = weighted(&bs, &[5, 1, 1], "algorithm = \"round_robin\"");
    let c = tally(&f.url("/"), 30, &[]);
    assert_eq!(
        (count(&c, "a"), count(&c, "b"), count(&c, "c")),
        (10, 10, 10)
    );
}

#[test]
fn weighted_round_robin_follows_weights() {
    let bs = three();
    let f = weighted(&bs, &[5, 1, 1], "algorithm = \"weighted_round_robin\"");
    let c = tally(&f.url("/"), 70, &[]);
    assert_eq!(
        (count(&c, "a"), count(&c, "b"), count(&c, "c")),
        (50, 10, 10)
    );
}

#[test]
fn random_and_power_of_two_reach_every_backend() {
    for algorithm in ["random", "power_of_two"] {
        let bs = three();
        let f = weighted(&bs, &[1, 1, 1], &format!("algorithm = \"{algorithm}\""));
        let c = tally(&f.url("/"), 300, &[]);
        for name in ["a", "b", "c"] {
            // Sequential requests: each backend expects 100; allow wide randomness.
            assert!(count(&c, name) >= 50, "{algorithm}: {c:?}");
        }
    }
}

#[test]
fn random_respects_weights() {
    let bs = three();
    let f = weighted(&bs, &[8, 1, 1], "algorithm = \"random\"");
    let c = tally(&f.url("/"), 400, &[]);
    assert!(count(&c, "a") > 250, "{c:?}");
}

/// "a" answers after 1.5 s, "b" and "c" at once.
fn one_slow() -> [Backend; 3] {
    [
        Backend::start_slow("a", Duration::from_millis(1500)),
        Backend::start("b"),
        Backend::start("c"),
    ]
}

#[test]
fn round_robin_keeps_sending_to_a_slow_backend() {
    // The contrast for the two tests below.
    let bs = one_slow();
    let f = weighted(&bs, &[1, 1, 1], "algorithm = \"round_robin\"");
    let c = spread(&f.url("/"), 30, Duration::from_millis(10));
    assert_eq!(count(&c, "a"), 10, "{c:?}");
}

#[test]
fn least_connections_avoids_the_busy_backend() {
    let bs = one_slow();
    let f = weighted(&bs, &[1, 1, 1], "algorithm = \"least_connections\"");
    // 30 requests over 0.3 s: "a" holds its first one for 1.5 s, so it is the busy
    // backend for the whole run and gets nothing more.
    let c = spread(&f.url("/"), 30, Duration::from_millis(10));
    assert!(count(&c, "a") <= 1, "{c:?}");
    assert_eq!(count(&c, "b") + count(&c, "c") + count(&c, "a"), 30);
    assert!(count(&c, "b") >= 10 && count(&c, "c") >= 10, "{c:?}");
}

#[test]
fn least_connections_is_weight_aware() {
    let bs = three();
    let f = weighted(&bs, &[4, 1, 1], "algorithm = \"least_connections\"");
    // Six requests held open at once: in-flight per weight evens out at 4/1/1.
    let _ = bs;
    let slow: Vec<Backend> = vec![
        Backend::start_slow("a", Duration::from_millis(800)),
        Backend::start_slow("b", Duration::from_millis(800)),
        Backend::start_slow("c", Duration::from_millis(800)),
    ];
    drop(f);
    let f = weighted(&slow, &[4, 1, 1], "algorithm = \"least_connections\"");
    let c = spread(&f.url("/"), 6, Duration::from_millis(20));
    assert_eq!(
        (count(&c, "a"), count(&c, "b"), count(&c, "c")),
        (4, 1, 1),
        "{c:?}"
    );
}

#[test]
fn least_response_time_prefers_the_fast_backends() {
    let bs = [
        Backend::start_slow("a", Duration::from_millis(60)),
        Backend::start("b"),
        Backend::start("c"),
    ];
    let f = weighted(&bs, &[1, 1, 1], "algorithm = \"least_response_time\"");
    // Sequential requests over about 2 s: "a" is measured (4 samples), then avoided for
    // its slowness; "b" and "c", about as fast as each other, both keep getting traffic
    // (how evenly depends on the machine's timing jitter: loaded CI saw 49/7).
    let c = paced(&f.url("/"), 60, Duration::from_millis(30));
    assert!(count(&c, "a") <= 5, "{c:?}");
    assert!(count(&c, "b") >= 3 && count(&c, "c") >= 3, "{c:?}");
}

#[test]
fn hash_on_a_header_is_sticky() {
    let bs = three();
    let f = weighted(
        &bs,
        &[1, 1, 1],
        "algorithm = \"hash\"\nhash_key = \"header:X-User\"",
    );
    let mut owners = std::collections::BTreeSet::new();
    for user in 0..30 {
        let user = format!("user-{user}");
        let c = tally(&f.url("/"), 5, &[("x-user", &user)]);
        assert_eq!(c.len(), 1, "{user} moved: {c:?}");
        owners.insert(c.keys().next().unwrap().clone());
    }
    assert_eq!(owners.len(), 3, "30 users all on {owners:?}");
}

#[test]
fn hash_on_source_ip_and_uri() {
    let bs = three();
    let f = weighted(
        &bs,
        &[1, 1, 1],
        "algorithm = \"hash\"\nhash_key = \"source_ip\"",
    );
    assert_eq!(tally(&f.url("/"), 20, &[]).len(), 1);
    let bs = three();
    let f = weighted(&bs, &[1, 1, 1], "algorithm = \"hash\"\nhash_key = \"uri\"");
    let mut owners = std::collections::BTreeSet::new();
    for i in 0..30 {
        let c = tally(&f.url(&format!("/page/{i}")), 3, &[]);
        assert_eq!(c.len(), 1);
        owners.insert(c.keys().next().unwrap().clone());
    }
    assert_eq!(owners.len(), 3);
}

#[test]
fn consistent_hash_on_a_cookie_is_sticky() {
    let bs = three();
    let f = weighted(
        &bs,
        &[1, 1, 1],
        "algorithm = \"consistent_hash\"\nhash_key = \"cookie:session\"",
    );
    let mut owners = std::collections::BTreeSet::new();
    for s in 0..30 {
        let cookie = format!("theme=dark; session=s{s}");
        let c = tally(&f.url("/"), 4, &[("cookie", &cookie)]);
        assert_eq!(c.len(), 1, "session {s} moved: {c:?}");
        owners.insert(c.keys().next().unwrap().clone());
    }
    assert_eq!(owners.len(), 3);
}
