//! A dnsmasq for tests, on 127.0.0.1 only, answering from what its options say (no
//! upstream, no /etc/hosts), stopped when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Dnsmasq {
    pub child: Child,
    pub port: u16,
}

impl Dnsmasq {
    /// Starts one with `options` on `port` (or a port free for TCP and UDP) and waits
    /// until `ready(port)`. One that exits or stays silent is started again (on another
    /// port when none was asked for); after three tries the test fails with what it said.
    pub fn start(options: &[String], port: Option<u16>, ready: impl Fn(u16) -> bool) -> Dnsmasq {
        let mut said = Vec::new();
        for _ in 0..3 {
            let port = port.unwrap_or_else(super::free_port_for_dns);
            let mut child = Command::new("dnsmasq")
                .args([
                    "--keep-in-foreground",
                    "--no-resolv",
                    "--no-hosts",
                    "--bind-interfaces",
                    "--listen-address=127.0.0.1",
                    "--user=root",
                    "--pid-file=",
                ])
                .arg(format!("--port={port}"))
                .args(options)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("dnsmasq is installed by scripts/test (apt-get install dnsmasq-base)");
            // A loaded machine may take longer than a moment.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if ready(port) {
                    return Dnsmasq { child, port };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            said.push(format!(
                "port {port}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        panic!("dnsmasq did not start: {said:?}");
    }

    /// Re-reads its hosts files (SIGHUP).
    #[allow(dead_code)]
    pub fn reload(&self) {
        Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
