//! The command line: `run`, `check`, `serve` and `demo`. Each command returns the
//! process exit code (0 ok, 1 runtime failure, 2 invalid configuration or usage).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::balance::{Algorithm, HashKey};
use crate::config::{BackendConfig, Config, Limits, ListenerConfig, PoolConfig, Timeouts};
use crate::listener;

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
    },
    /// Validate a config file and exit: 0 if valid, 2 with FILE:LINE:COL errors if not.
    Check {
        /// The TOML config file.
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
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
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
        Command::Run { config } => match Config::load(&config) {
            Ok(c) => run(&c),
            Err(e) => {
                eprintln!("{e}");
                2
            }
        },
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
            run(&config)
        }
        Command::Demo { port } => crate::demo::run(port),
    }
}

/// Starts the listeners and blocks until SIGINT/SIGTERM.
pub fn run(config: &Config) -> i32 {
    let signals = Signals::install();
    match listener::start(config) {
        Ok(running) => {
            signals.wait();
            tracing::info!("shutting down");
            drop(running);
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// The process's signal handlers, installed before anything listens so that a signal
/// arriving during start-up is handled, not fatal.
pub struct Signals {
    runtime: tokio::runtime::Runtime,
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers for SIGINT, SIGTERM and SIGHUP.
    pub fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cannot start the signal handler");
        let _guard = runtime.enter();
        let listen = |kind| signal(kind).expect("cannot install a signal handler");
        Signals {
            interrupt: listen(SignalKind::interrupt()),
            terminate: listen(SignalKind::terminate()),
            hangup: listen(SignalKind::hangup()),
            runtime,
        }
    }

    /// Blocks until SIGINT or SIGTERM; SIGHUP is logged and otherwise ignored.
    pub fn wait(mut self) {
        self.runtime.block_on(async {
            loop {
                tokio::select! {
                    _ = self.interrupt.recv() => return,
                    _ = self.terminate.recv() => return,
                    _ = self.hangup.recv() => {
                        tracing::warn!("SIGHUP received: configuration reload is not supported yet; still running the current configuration");
                    }
                }
            }
        });
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
        access_log,
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
        }],
    }
}
