//! The command line: `run`, `check`, `reload`, `serve`, `demo`, `explain` (in
//! `crate::explain`) and `ctl` (in `crate::ctl`). Each command returns
//! the process exit code (0 ok, 1 runtime failure, 2 invalid configuration or usage).
//!
//! `run` keeps the process's main thread for signals and the control socket: SIGHUP and
//! `fulcrum reload` re-read the config file and put it in force if it is valid;
//! SIGTERM and SIGINT stop gracefully.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::balance::{Algorithm, HashKey};
use crate::config::{BackendConfig, Config, Limits, ListenerConfig, PoolConfig, Timeouts};
use crate::control;

mod running;

pub use running::{Signals, run};

/// Fulcrum: a fast, easy-to-run load balancer.
#[derive(Debug, Parser)]
#[command(name = "fulcrum", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the balancer described by a config file.
    Run {
        /// The TOML config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Take the listening sockets over from the Fulcrum running this config file
        /// (a binary upgrade with no connection refused); it then stops gracefully.
        #[arg(long)]
        takeover: bool,
        /// Follow the config in etcd (v3, plain HTTP): http://HOST:PORT, comma-separated
        /// for several endpoints. Valid values are written to FILE and put in force.
        #[arg(long, value_name = "URL", value_delimiter = ',', requires = "etcd_key")]
        etcd: Vec<String>,
        /// The etcd key holding the config text (with --etcd).
        #[arg(long, value_name = "KEY", requires = "etcd")]
        etcd_key: Option<String>,
        /// How often the key is read (with --etcd).
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
        etcd_interval: std::time::Duration,
    },
    /// Validate a config file and exit: 0 if valid, 2 with FILE:LINE:COL errors if not.
    Check {
        /// The TOML config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Have the Fulcrum running this config file re-read it: prints what changed, or the
    /// errors (then the running config stays). Exit 0 when reloaded, 2 when the file is
    /// invalid, 1 when no Fulcrum answers.
    Reload {
        /// The TOML config file the running Fulcrum was started with.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Balance one address over backends given on the command line, no config file.
    Serve {
        /// Address to listen on.
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
        /// A backend address (repeat for each backend; `ADDR*WEIGHT` sets a weight).
        #[arg(long = "backend", value_name = "ADDR", required = true)]
        backends: Vec<String>,
        /// Balancing algorithm.
        #[arg(long, default_value = "weighted_round_robin", value_parser = parse_algorithm)]
        algorithm: Algorithm,
        /// Worker threads, 1-1024 (default: one per CPU core).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
        threads: Option<u16>,
        /// Log every request.
        #[arg(long)]
        access_log: bool,
    },
    /// Start three demo backends and a balancer in front of them, then log each request.
    Demo {
        /// Port to try first for the balancer (the next free one is used if taken).
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Talk to a running Fulcrum's admin API: state, drain, enable, weight, add/remove
    /// backends, reload, diff, wait (see docs/admin.md).
    Ctl(crate::ctl::CtlArgs),
    /// Show what Fulcrum does with one request: the listener, each route and why it
    /// matches or not, the pool, its backends, the backend it would pick.
    Explain {
        /// The TOML config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// The request.
        #[command(flatten)]
        request: crate::explain::RequestArgs,
    },
    /// Write the manual pages (man/ in the repository holds them) into DIR.
    #[command(hide = true)]
    Man {
        /// Where to write fulcrum.1 and one page per command.
        dir: PathBuf,
    },
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    crate::config::units::parse_duration(text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "write a duration: \"1s\", \"500ms\"".to_owned())
}

fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    Algorithm::from_name(name).ok_or_else(|| {
        format!(
            "unknown algorithm; choose one of: {}",
            Algorithm::NAMES.join(", ")
        )
    })
}

/// Runs the parsed command line; returns the exit code.
pub fn main(cli: Cli) -> i32 {
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                let backends: usize = c.pools.iter().map(|p| p.backends.len()).sum();
                println!(
                    "{}: ok ({}, {}, {})",
                    config.display(),
                    plural(c.listeners.len(), "listener"),
                    plural(c.pools.len(), "pool"),
                    plural(backends, "backend")
                );
                0
            }
            Err(e) => {
                eprintln!("{e}");
                2
            }
        },
        Command::Run {
            config: path,
            takeover,
            etcd,
            etcd_key,
            etcd_interval,
        } => {
            // With etcd, a valid value of the key becomes the file before it is loaded.
            let source = etcd_key.map(|key| {
                let mut source = crate::etcd::Source::new(&etcd, &key, &path, etcd_interval);
                let revision = source.bootstrap();
                (source, revision)
            });
            match Config::load(&path) {
                Ok(c) => run(&c, Some((&path, takeover)), source),
                Err(e) => {
                    eprintln!("{e}");
                    2
                }
            }
        }
        Command::Reload { config: path } => reload(&path),
        Command::Serve {
            listen,
            backends,
            algorithm,
            threads,
            access_log,
        } => {
            let mut parsed = Vec::with_capacity(backends.len());
            for spec in &backends {
                match parse_backend(spec) {
                    Some(b) => parsed.push(b),
                    None => {
                        eprintln!(
                            "error: bad --backend `{spec}`: write IP:PORT or IP:PORT*WEIGHT (weight 1-1000)"
                        );
                        return 2;
                    }
                }
            }
            let threads = threads.map(usize::from);
            let config = single_pool_config(listen, parsed, algorithm, threads, access_log);
            run(&config, None, None)
        }
        Command::Demo { port } => crate::demo::run(port),
        Command::Ctl(args) => crate::ctl::main(args),
        Command::Explain { config, request } => crate::explain::main(&config, &request),
        Command::Man { dir } => {
            use clap::CommandFactory;
            match std::fs::create_dir_all(&dir)
                .and_then(|()| clap_mangen::generate_to(Cli::command(), &dir))
            {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!(
                        "error: cannot write the manual pages in {}: {e}",
                        dir.display()
                    );
                    1
                }
            }
        }
    }
}

/// `fulcrum reload`: checks the file here first (so errors print with FILE:LINE:COL even
/// if nothing runs), then asks the running Fulcrum to reload it.
fn reload(path: &Path) -> i32 {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("the running configuration is unchanged");
            return 2;
        }
    };
    let socket = control::socket_path(config.control_socket.as_deref(), path);
    match control::send(&socket, "reload") {
        Ok((true, lines)) => {
            if lines.is_empty() {
                println!("reloaded: nothing changed");
            } else {
                println!("reloaded:");
                for l in lines {
                    println!("  {l}");
                }
            }
            0
        }
        Ok((false, lines)) => {
            for l in lines {
                eprintln!("{l}");
            }
            eprintln!("the running configuration is unchanged");
            2
        }
        Err(e) => {
            eprintln!(
                "error: no Fulcrum answers on {} ({e}): is one running with -c {}?",
                socket.display(),
                path.display()
            );
            1
        }
    }
}

fn parse_backend(spec: &str) -> Option<BackendConfig> {
    let (addr, weight) = match spec.split_once('*') {
        Some((a, w)) => (a, w.parse::<u32>().ok().filter(|w| (1..=1000).contains(w))?),
        None => (spec, 1),
    };
    let address: SocketAddr = addr.parse().ok()?;
    Some(BackendConfig {
        name: address.to_string(),
        address,
        weight,
        backup: false,
        source: None,
    })
}

/// A config with one HTTP listener in front of one pool (for `serve` and `demo`).
pub fn single_pool_config(
    listen: SocketAddr,
    backends: Vec<BackendConfig>,
    algorithm: Algorithm,
    threads: Option<usize>,
    access_log: bool,
) -> Config {
    let limits = Limits::default();
    Config {
        threads: threads
            .filter(|&t| t > 0)
            .unwrap_or_else(crate::config::default_threads),
        access_log: crate::config::AccessLogConfig {
            enabled: access_log,
            ..Default::default()
        },
        shutdown_grace: crate::config::DEFAULT_SHUTDOWN_GRACE,
        shutdown_delay: std::time::Duration::ZERO,
        control_socket: None,
        admin: None,
        shared: None,
        resolver: crate::config::ResolverConfig::default(),
        timeouts: Timeouts::default(),
        limits,
        listeners: vec![ListenerConfig::http(
            &listen.to_string(),
            listen,
            0,
            limits.max_connections,
        )],
        pools: vec![PoolConfig {
            name: "default".into(),
            algorithm,
            hash_key: HashKey::default(),
            backends,
            discovery: Vec::new(),
            health: None,
            retries: crate::config::Retries::default(),
            unavailable_body: None,
            breaker: crate::balance::circuit::CircuitPolicy::DISABLED,
            slow_start: std::time::Duration::ZERO,
            max_in_flight: 0,
            queue: 1000,
            queue_timeout: std::time::Duration::from_secs(5),
            send_proxy: None,
            http_version: crate::config::HttpVersion::Http1,
            tls: None,
            sticky: None,
            agent: None,
        }],
        rate_limits: Vec::new(),
        caches: Vec::new(),
    }
}
