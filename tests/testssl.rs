//! testssl.sh (Debian's package) against a Fulcrum TLS listener with its default
//! settings: protocols, cipher suites, server preferences and the known vulnerabilities
//! (Heartbleed, ROBOT, BEAST, LUCKY13, ...). Nothing may be rated HIGH or CRITICAL.

mod common;

use std::process::Command;

use common::pki::Pki;
use common::{Backend, Fulcrum};

#[test]
fn testssl_finds_nothing_high_or_critical() {
    let pki = Pki::new();
    let leaf = pki.leaf("server", &["127.0.0.1", "tls.test"]);
    let backend = Backend::start("app1");
    let config = format!(
        "threads = 1\naccess_log = false\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[listeners.tls]\ncertificates = [{{ cert = {:?}, key = {:?} }}]\n\n[pools.app]\nbackends = [{{ address = \"{}\" }}]\n",
        leaf.cert, leaf.key, backend.addr
    );
    let f = Fulcrum::start(&config);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("testssl.json");
    let out = Command::new("testssl")
        .args([
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            "--nodns",
            "none",
        ])
        .arg("--add-ca")
        .arg(&pki.ca)
        .args([
            "-p",
            "-s",
            "-P",
            "-S",
            "-U",
            "--severity",
            "LOW",
            "--jsonfile",
        ])
        .arg(&json)
        .arg(f.addr.to_string())
        .output()
        .unwrap();
    let findings = std::fs::read_to_string(&json).unwrap_or_else(|_| {
        panic!(
            "testssl wrote no report: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let bad: Vec<&str> = findings
        .split('}')
        .filter(|f| {
            f.contains("\"severity\"") && (f.contains("\"HIGH\"") || f.contains("\"CRITICAL\""))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "testssl findings rated HIGH or CRITICAL: {bad:#?}"
    );
    // The rest (LOW, MEDIUM), for the record.
    eprintln!("testssl findings: {findings}");
    // It did test the listener, start to end. (testssl's exit status is not a verdict:
    // it varies with what it could not test, e.g. ticket resumption.)
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("TLS 1.3    offered"), "{stdout}");
    assert!(stdout.contains("Testing vulnerabilities"), "{stdout}");
    assert!(stdout.contains(" Done "), "{stdout}");
}
