//! `fulcrum run`: the main thread of a running Fulcrum. It starts the listeners (taking
//! them over from another process with `--takeover`), the admin listener, DNS discovery
//! and the etcd follower, then serves signals, the control socket and changes (admin
//! API, DNS, etcd) until SIGINT or SIGTERM, and stops gracefully (`shutdown_delay`,
//! then `shutdown_grace`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::{control, listener};

/// Starts the listeners, then serves signals and the control socket until SIGINT or
/// SIGTERM (or a takeover), and stops gracefully. `file`: the config file, re-read on
/// reload, and whether to take the sockets over from the process running it (`None` for
/// `serve`, which has no file).
/// `etcd`: the etcd key to follow, and the revision read at start.
pub fn run(
    config: &Config,
    file: Option<(&Path, bool)>,
    etcd: Option<(crate::etcd::Source, u64)>,
) -> i32 {
    let signals = Signals::install();
    let path = file.map(|(p, _)| p);
    let socket = path.map(|p| control::socket_path(config.control_socket.as_deref(), p));
    let mut inherited = Vec::new();
    let mut takeover = None;
    if let (Some((_, true)), Some(socket)) = (file, &socket) {
        match control::take_over(socket) {
            Ok(mut taken) => {
                tracing::info!(
                    sockets = taken.sockets.len(),
                    "took the listening sockets over from the running Fulcrum"
                );
                inherited = std::mem::take(&mut taken.sockets);
                takeover = Some(taken);
            }
            Err(e) => {
                eprintln!(
                    "error: cannot take over from the Fulcrum on {}: {e}",
                    socket.display()
                );
                return 1;
            }
        }
    }
    let bind_control = |signals: &Signals| {
        socket.as_ref().and_then(|socket| {
            let _guard = signals.runtime.enter();
            match control::Server::bind(socket) {
                Ok(server) => Some(server),
                Err(e) => {
                    tracing::warn!(socket = %socket.display(), error = %e, "no control socket: `fulcrum reload` will not reach this process (SIGHUP still reloads)");
                    None
                }
            }
        })
    };
    // Bound before anything listens, so that `fulcrum reload` works as soon as the
    // listeners are logged (after a takeover: once the old process has let it go).
    let mut control = if takeover.is_none() {
        bind_control(&signals)
    } else {
        None
    };
    // The access log's file is opened before anything listens: an unwritable one stops
    // the start.
    if let Err(e) = crate::accesslog::writer::start(config.access_log.path.as_deref()) {
        eprintln!(
            "error: cannot open the access log {}: {e}",
            config
                .access_log
                .path
                .as_deref()
                .unwrap_or(Path::new("-"))
                .display()
        );
        return 1;
    }
    // Bound before the listeners, so that a busy admin port stops the start cleanly.
    let admin = match config
        .admin
        .as_ref()
        .map(|a| (a.bind, crate::admin::bind(a.bind)))
    {
        None => None,
        Some((_, Ok(listener))) => Some(listener),
        Some((addr, Err(e))) => {
            eprintln!("error: cannot listen on {addr} (admin): {e}");
            return 1;
        }
    };
    let mut running = match listener::start_with(config, inherited) {
        Ok(running) => running,
        Err(e) => {
            eprintln!("error: {e}");
            if takeover.is_some() {
                eprintln!("the running Fulcrum keeps serving");
            }
            return 1;
        }
    };
    if let (Some(taken), Some(path)) = (takeover, &socket) {
        // The old process stops accepting once told, and removes its control socket.
        taken.ready();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while path.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        control = bind_control(&signals);
    }
    // Changes made through the admin API are applied here, as reloads.
    let (changes, mut admin_changes) = tokio::sync::mpsc::unbounded_channel();
    // Backends found through DNS are followed as their TTLs run out, and changed the
    // same way.
    crate::discovery::start(Arc::clone(&running.live), changes.clone());
    // A fleet's config in etcd: new values are put in force the same way.
    if let Some((source, revision)) = etcd {
        source.follow(Arc::clone(&running.live), revision, changes.clone());
    }
    if let Some(listener) = admin {
        let addr = listener.local_addr().ok();
        let file = path.map(Path::to_owned);
        match crate::admin::start(listener, Arc::clone(&running.live), file, changes) {
            Ok(()) => match addr {
                Some(admin) => tracing::info!(%admin, "admin listener: metrics at /metrics"),
                None => tracing::info!("admin listener: metrics at /metrics"),
            },
            Err(e) => tracing::error!(error = %e, "cannot start the admin listener"),
        }
    }
    let mut signals = signals;
    loop {
        match signals.next(control.as_ref(), Some(&mut admin_changes)) {
            Event::Stop => break,
            Event::Reopen => {
                tracing::info!("SIGUSR1 received: reopening the access log");
                crate::accesslog::writer::reopen();
            }
            Event::Admin(change) => {
                let outcome = match change.config {
                    Some(config) => match running.reload(config) {
                        Ok(lines) => {
                            for l in &lines {
                                tracing::info!("{} change: {l}", change.origin);
                            }
                            Ok(lines)
                        }
                        Err(e) => Err(vec![e.to_string()]),
                    },
                    None => match path {
                        Some(p) => match reload_running(&mut running, p) {
                            (true, lines) => Ok(lines),
                            (false, lines) => Err(lines),
                        },
                        None => Err(vec!["started without a config file".into()]),
                    },
                };
                let _ = change.reply.send(outcome);
            }
            Event::Reload(Some(request)) if request.command == "takeover" => {
                let handed = request.into_std().and_then(|stream| {
                    running.hand_over(&stream)?;
                    Ok(stream)
                });
                match handed {
                    // The new process may need a while (certificates, health checks).
                    Ok(stream) if control::wait_ready(&stream, Duration::from_secs(60)) => {
                        tracing::info!("listening sockets handed over to a new process");
                        break;
                    }
                    Ok(_) => tracing::error!("the new process did not start: still serving"),
                    Err(e) => tracing::error!(error = %e, "socket hand-over failed: still serving"),
                }
            }
            Event::Reload(Some(request)) if request.command != "reload" => {
                let answer = vec![format!(
                    "unknown command `{}`: the control socket takes `reload` and `takeover`",
                    request.command
                )];
                signals.runtime.block_on(request.answer(false, &answer));
            }
            Event::Reload(request) => {
                let (ok, lines) = match path {
                    Some(p) => reload_running(&mut running, p),
                    None => {
                        tracing::warn!(
                            "nothing to reload: Fulcrum was started without a config file"
                        );
                        (
                            false,
                            vec!["nothing to reload: started without a config file".into()],
                        )
                    }
                };
                if let Some(request) = request {
                    signals.runtime.block_on(request.answer(ok, &lines));
                }
            }
        }
    }
    let delay = running.live.snapshot().config.shutdown_delay;
    if !delay.is_zero() {
        // Still serving, with the health saying draining, while traffic moves away.
        running.live.node.leaving(true);
        tracing::info!(
            delay_s = delay.as_secs_f64(),
            "stopping: health says draining; listeners close after shutdown_delay"
        );
        std::thread::sleep(delay);
    }
    let grace = running.live.snapshot().config.shutdown_grace;
    tracing::info!(
        grace_s = grace.as_secs_f64(),
        open = running.live.connections(),
        "stopping: no new connections; waiting for those in progress"
    );
    drop(control);
    if running.stop(grace) {
        tracing::info!("stopped");
    }
    0
}

/// Re-reads `path` and puts it in force; returns whether it worked and what to tell.
fn reload_running(running: &mut listener::Running, path: &Path) -> (bool, Vec<String>) {
    tracing::info!(file = %path.display(), "reloading the configuration");
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            let lines: Vec<String> = e.to_string().lines().map(str::to_owned).collect();
            for l in &lines {
                tracing::error!("reload refused: {l}");
            }
            tracing::error!("reload refused: the running configuration is unchanged");
            running
                .live
                .node
                .reloaded(Some(lines.first().cloned().unwrap_or_default()));
            return (false, lines);
        }
    };
    match running.reload(config) {
        Ok(changes) => {
            running.live.node.reloaded(None);
            tracing::info!(changes = changes.len(), "configuration reloaded");
            for c in &changes {
                tracing::info!("reload: {c}");
            }
            (true, changes)
        }
        Err(e) => {
            tracing::error!(error = %e, "reload failed: the running configuration is unchanged");
            running.live.node.reloaded(Some(e.to_string()));
            (false, vec![format!("error: {e}")])
        }
    }
}

/// What the main thread is woken for.
enum Event {
    /// SIGINT or SIGTERM.
    Stop,
    /// SIGHUP (`None`) or a control-socket request.
    Reload(Option<control::Request>),
    /// A change made through the admin API.
    Admin(Box<crate::admin::Change>),
    /// SIGUSR1: open the access log file again (logrotate moved it).
    Reopen,
}

/// The process's signal handlers, installed before anything listens so that a signal
/// arriving during start-up is handled, not fatal.
pub struct Signals {
    runtime: tokio::runtime::Runtime,
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    user1: tokio::signal::unix::Signal,
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
            user1: listen(SignalKind::user_defined1()),
            runtime,
        }
    }

    /// Blocks until SIGINT or SIGTERM; SIGHUP is ignored (for `demo`).
    pub fn wait(mut self) {
        while let Event::Reload(_) | Event::Reopen = self.next(None, None) {}
    }

    /// Blocks until the next signal, control request or admin change.
    fn next(
        &mut self,
        control: Option<&control::Server>,
        admin: Option<&mut tokio::sync::mpsc::UnboundedReceiver<crate::admin::Change>>,
    ) -> Event {
        let Signals {
            runtime,
            interrupt,
            terminate,
            hangup,
            user1,
        } = self;
        runtime.block_on(async {
            let request = async {
                match control {
                    Some(server) => server.next().await,
                    None => std::future::pending().await,
                }
            };
            let change = async {
                match admin {
                    Some(changes) => match changes.recv().await {
                        Some(change) => change,
                        None => std::future::pending().await,
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = interrupt.recv() => Event::Stop,
                _ = user1.recv() => Event::Reopen,
                change = change => Event::Admin(Box::new(change)),
                _ = terminate.recv() => Event::Stop,
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP received");
                    Event::Reload(None)
                }
                request = request => {
                    if request.command == "reload" {
                        tracing::info!("reload requested on the control socket");
                    }
                    Event::Reload(Some(request))
                }
            }
        })
    }
}
