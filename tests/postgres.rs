//! Layer 4 with real software: pgbench through Fulcrum across two PostgreSQL servers
//! (installed by scripts/test; run as the `postgres` user, which the package creates).

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Fulcrum;

/// The directory holding `initdb`, `pg_ctl` and `pgbench`.
fn pg_bin() -> PathBuf {
    let root = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed by scripts/test (apt-get install postgresql)");
    let mut versions: Vec<PathBuf> = root.filter_map(|e| Some(e.ok()?.path())).collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version").join("bin")
}

/// Runs a PostgreSQL tool as the `postgres` user (the server refuses to run as root).
fn as_postgres(tool: &str, args: &[&str]) -> Output {
    let program = pg_bin().join(tool);
    let mut command = if unsafe { libc_geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&program);
        c
    } else {
        Command::new(&program)
    };
    command.args(args).output().unwrap()
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

struct Postgres {
    port: u16,
    dir: PathBuf,
}

impl Postgres {
    fn start() -> Postgres {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("fulcrum-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&dir)
            .status();
        let data = dir.join("data");
        let out = as_postgres(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            dir.display()
        );
        let log = dir.join("log");
        let out = as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Postgres { port, dir }
    }

    fn pgbench(&self, port: u16, args: &[&str]) -> Output {
        let port = port.to_string();
        let mut all = vec!["-h", "127.0.0.1", "-p", &port, "-U", "postgres"];
        all.extend_from_slice(args);
        all.push("postgres");
        as_postgres("pgbench", &all)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        as_postgres(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn pgbench_through_fulcrum_across_two_postgresql_servers() {
    let one = Postgres::start();
    let two = Postgres::start();
    // Each server gets the pgbench tables directly, so any connection finds them.
    for pg in [&one, &two] {
        let out = pg.pgbench(pg.port, &["-i", "-s", "1", "-q"]);
        assert!(
            out.status.success(),
            "pgbench -i: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let f = Fulcrum::start(&format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"tcp\"\npool = \"db\"\n[pools.db]\nalgorithm = \"round_robin\"\nbackends = [{{ name = \"pg1\", address = \"127.0.0.1:{}\" }}, {{ name = \"pg2\", address = \"127.0.0.1:{}\" }}]\n",
        one.port, two.port
    ));
    let started = Instant::now();
    let out = one.pgbench(f.addr.port(), &["-c", "4", "-j", "2", "-T", "5", "-n"]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("number of failed transactions: 0"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let processed = text
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split('/').next()?.trim().parse::<u64>().ok())
        .unwrap();
    assert!(processed > 100, "{text}");
    // Both servers took connections.
    assert!(f.wait_log("backend=pg1"), "{}", f.log());
    assert!(f.wait_log("backend=pg2"), "{}", f.log());
}
