//! A fleet's config from etcd (Debian's etcd-server, started here): two instances run
//! with `--etcd URL --etcd-key KEY` and follow the key. A new valid value is put in
//! force by both; an invalid one is refused by both with its errors at line and column,
//! and they keep the last good config (their health says config stale) until a valid
//! value comes; an instance started meanwhile runs its file and says the same; the file
//! holds the last good value; etcd stopped changes nothing.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Backend, Fulcrum};

const KEY: &str = "/fulcrum/test";

struct Etcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let port = |_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (client, peer) = (port(0), port(1));
        let url = format!("http://127.0.0.1:{client}");
        let child = Command::new("etcd")
            .args(["--name", "test", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &format!("test=http://127.0.0.1:{peer}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd is installed by scripts/test (apt-get install etcd-server)");
        let etcd = Etcd {
            child,
            url,
            _dir: dir,
        };
        for _ in 0..100 {
            if etcd
                .call(
                    "/v3/kv/range",
                    &format!("{{\"key\": \"{}\"}}", B64.encode("x")),
                )
                .is_some()
            {
                return etcd;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd did not start");
    }

    fn call(&self, path: &str, body: &str) -> Option<String> {
        let (code, out, _) = common::curl(&[
            "-sf",
            "-X",
            "POST",
            "--data",
            body,
            &format!("{}{path}", self.url),
        ]);
        (code == 0).then_some(out)
    }

    fn put(&self, value: &str) {
        let body = format!(
            "{{\"key\": \"{}\", \"value\": \"{}\"}}",
            B64.encode(KEY),
            B64.encode(value)
        );
        assert!(self.call("/v3/kv/put", &body).is_some(), "put failed");
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(backend: &Backend) -> String {
    format!(
        "threads = 1\n[admin]\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [pools.app]\nbackends = [{{ name = \"{0}\", address = \"{1}\" }}]\n",
        backend.name, backend.addr
    )
}

/// Which backend answers `f` (waits up to 5 s for it to be `want`).
fn served_by(f: &Fulcrum, want: &str) -> String {
    let mut body = String::new();
    for _ in 0..50 {
        body = common::curl(&["-s", &f.url("/")]).1;
        if body == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    body
}

fn health(f: &Fulcrum) -> serde_json::Value {
    let (_, body, _) = common::curl(&["-s", &format!("http://{}/health", f.admin_addr())]);
    serde_json::from_str(&body).unwrap()
}

#[test]
fn instances_follow_the_etcd_key_and_refuse_a_bad_value_alike() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let etcd = Etcd::start();
    etcd.put(&config(&a));
    let args = [
        "--etcd",
        &etcd.url,
        "--etcd-key",
        KEY,
        "--etcd-interval",
        "100ms",
    ];
    // Their files say b; etcd says a, and wins at start.
    let fleet = [
        Fulcrum::start_args(&config(&b), &args),
        Fulcrum::start_args(&config(&b), &args),
    ];
    for f in &fleet {
        assert_eq!(served_by(f, "a"), "a");
        assert_eq!(std::fs::read_to_string(&f.path).unwrap(), config(&a));
    }

    // A new value: both put it in force.
    etcd.put(&config(&b));
    for f in &fleet {
        assert_eq!(served_by(f, "b"), "b", "{}", f.log());
        assert!(f.wait_log("config from etcd in force"), "{}", f.log());
    }

    // A bad value: both refuse it, with its position, and keep serving b.
    etcd.put("threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"nowhere\"\n");
    for f in &fleet {
        assert!(f.wait_log("etcd value refused"), "{}", f.log());
        assert!(f.log().contains("fulcrum.toml:4:8"), "{}", f.log());
        assert_eq!(served_by(f, "b"), "b");
        let h = health(f);
        assert_eq!(h["status"], "unhealthy", "{h}");
        assert!(
            h["reasons"][0].as_str().unwrap().contains("is invalid"),
            "{h}"
        );
        assert_eq!(std::fs::read_to_string(&f.path).unwrap(), config(&b));
    }

    // An instance started now runs its own file, and says its config is stale.
    let late = Fulcrum::start_args(&config(&b), &args);
    assert_eq!(served_by(&late, "b"), "b");
    assert!(late.log().contains("etcd value refused"), "{}", late.log());
    let mut h = health(&late);
    for _ in 0..50 {
        if h["status"] == "unhealthy" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        h = health(&late);
    }
    assert_eq!(h["status"], "unhealthy", "{h}");
    drop(late);

    // Then a good one again: in force, ready.
    etcd.put(&config(&a));
    for f in &fleet {
        assert_eq!(served_by(f, "a"), "a");
        for _ in 0..50 {
            if health(f)["status"] == "ready" {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(health(f)["status"], "ready");
    }

    // etcd gone: nothing changes.
    drop(etcd);
    for f in &fleet {
        assert!(f.wait_log("etcd does not answer"), "{}", f.log());
        assert_eq!(served_by(f, "a"), "a");
        assert_eq!(health(f)["status"], "ready");
    }
}
