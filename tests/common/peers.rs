//! Real third-party peers written in Python (tests/peers/): a WebSocket echo server and
//! client (`websockets`), a gRPC server and client (`grpcio`), a raw HTTP/2 client
//! (`h2`). The packages are installed by scripts/test from tests/peers/requirements.txt.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

/// A peer server, killed on drop.
pub struct PeerServer {
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PeerServer {
    /// Starts `tests/peers/NAME PORT_FILE ARGS...` and waits for it to write its port.
    pub fn start(name: &str, args: &[&str]) -> PeerServer {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let mut child = Command::new("python3")
            .arg(script(name))
            .arg(&port_file)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(port) = std::fs::read_to_string(&port_file)
                && let Ok(port) = port.trim().parse::<u16>()
            {
                return PeerServer {
                    addr: SocketAddr::from(([127, 0, 0, 1], port)),
                    child,
                    _dir: dir,
                };
            }
            if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                panic!("{name} did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tests/peers/NAME ARGS...` to completion.
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new("python3")
        .arg(script(name))
        .args(args)
        .output()
        .unwrap()
}

/// Runs a peer client and returns its JSON line, asserting it succeeded.
pub fn run_ok(name: &str, args: &[&str]) -> String {
    let out = run(name, args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Starts `tests/peers/NAME ARGS...` with its standard output piped, for a test that
/// talks with it line by line.
pub fn spawn(name: &str, args: &[&str]) -> Child {
    Command::new("python3")
        .arg(script(name))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}
