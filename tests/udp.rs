//! UDP listeners with real software: `dig` through Fulcrum across two dnsmasq instances
//! that answer differently (installed by scripts/test).

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::Fulcrum;
use common::dns::Dnsmasq;

/// A DNS server answering `test.example` with `answer` (an address used only as data).
fn dnsmasq(answer: &str) -> Dnsmasq {
    let options = [
        "--no-poll".to_owned(),
        format!("--address=/test.example/{answer}"),
    ];
    Dnsmasq::start(&options, None, |port| dig(port, "test.example") == answer)
}

fn dig(port: u16, name: &str) -> String {
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            name,
            "A",
            "+short",
            "+tries=1",
            "+time=2",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn dig_through_fulcrum_across_two_dnsmasq_instances() {
    let one = dnsmasq("192.0.2.1");
    let two = dnsmasq("192.0.2.2");
    assert_eq!(
        dig(one.port, "test.example"),
        "192.0.2.1",
        "dnsmasq did not start"
    );
    let f = Fulcrum::start(&format!(
        "threads = 2\n[[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"udp\"\npool = \"dns\"\n[pools.dns]\nalgorithm = \"round_robin\"\nbackends = [{{ address = \"127.0.0.1:{}\" }}, {{ address = \"127.0.0.1:{}\" }}]\n",
        one.port, two.port
    ));
    let port = f.addr.port();
    // Each dig is a new client port, so a new flow: round robin alternates.
    let mut answers = std::collections::BTreeMap::new();
    for _ in 0..10 {
        *answers.entry(dig(port, "test.example")).or_insert(0) += 1;
    }
    assert_eq!(
        answers,
        [("192.0.2.1".to_string(), 5), ("192.0.2.2".to_string(), 5)].into(),
        "{}",
        f.log()
    );
    // Concurrent clients each get their own answer (dig checks the query id and name).
    let handles: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || dig(port, "test.example")))
        .collect();
    for h in handles {
        let a = h.join().unwrap();
        assert!(a == "192.0.2.1" || a == "192.0.2.2", "{a:?}");
    }
}

#[test]
fn a_flow_keeps_its_backend_and_gets_its_replies() {
    // Two raw UDP echo backends that prefix their name.
    let spawn = |name: &'static str| {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let reply = [name.as_bytes(), b":", &buf[..n]].concat();
                let _ = s.send_to(&reply, from);
            }
        });
        addr
    };
    let (a, b) = (spawn("a"), spawn("b"));
    let f = Fulcrum::start(&format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"udp\"\npool = \"echo\"\n[pools.echo]\nalgorithm = \"round_robin\"\nbackends = [{{ address = \"{a}\" }}, {{ address = \"{b}\" }}]\n"
    ));
    let mut owners = std::collections::BTreeSet::new();
    for c in 0..4 {
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let mut owner = None;
        for i in 0..5 {
            let msg = format!("client{c}-{i}");
            client.send_to(msg.as_bytes(), f.addr).unwrap();
            let mut buf = [0u8; 2048];
            let n = client.recv(&mut buf).unwrap();
            let reply = String::from_utf8_lossy(&buf[..n]).to_string();
            let (name, echoed) = reply.split_once(':').unwrap();
            assert_eq!(echoed, msg);
            assert!(
                owner.is_none_or(|o| o == name),
                "a flow moved between backends"
            );
            owner = Some(name.to_string());
        }
        owners.insert(owner.unwrap());
    }
    assert_eq!(owners.len(), 2);
}
