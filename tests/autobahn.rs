//! The Autobahn WebSocket fuzzing client (its own case files, run by the `kosoku`
//! engine from PyPI; tests/peers/autobahn.py) against the `websockets` echo server,
//! directly and through Fulcrum: every case must end the same way both times.
//!
//! The permessage-deflate cases (12.*, 13.*) take ten minutes on two cores and test the
//! echo server's compression, which Fulcrum relays untouched; they are left to a run by
//! hand (`python3 tests/peers/autobahn.py URL OUTDIR`, see docs/http2.md).

mod common;

use common::Fulcrum;
use common::peers::{self, PeerServer};

const CASES: &str = "1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*";

#[test]
fn autobahn_cases_end_the_same_through_fulcrum_as_directly() {
    let echo = PeerServer::start("ws_echo.py", &[]);
    let dir = tempfile::tempdir().unwrap();
    let direct = dir.path().join("direct");
    let through = dir.path().join("fulcrum");
    let out = peers::run_ok(
        "autobahn.py",
        &[
            &format!("ws://{}/", echo.addr),
            direct.to_str().unwrap(),
            "--cases",
            CASES,
        ],
    );
    assert!(out.contains("\"ok\":true"), "{out}");

    let config = format!(
        "threads = 1\naccess_log = false\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"ws\"\n[pools.ws]\nbackends = [{{ address = \"{}\" }}]\n",
        echo.addr
    );
    let f = Fulcrum::start(&config);
    let out = peers::run_ok(
        "autobahn.py",
        &[
            &format!("ws://{}/", f.addr),
            through.to_str().unwrap(),
            "--cases",
            CASES,
            "--compare",
            direct.to_str().unwrap(),
        ],
    );
    assert!(out.contains("\"identical\":true"), "{out}");
    assert!(!out.contains("\"cases\":0,"), "{out}");
}
