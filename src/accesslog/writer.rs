//! The access log's writer thread: batches of lines from the workers arrive over a
//! bounded channel and are written to standard error or to a file, which is opened again
//! on SIGUSR1 (after logrotate moved it) or when a reload names another one. A worker
//! never waits for the disk: when the channel is full the batch is dropped and counted
//! (`fulcrum_access_log_dropped_lines_total`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, OnceLock};

/// Batches waiting to be written before new ones are dropped (with batches of
/// `super::BATCH` bytes, 32 MiB at most).
const QUEUED: usize = 128;

/// Written batches kept for reuse (a batch is large: allocating and freeing one each
/// time would cost page faults).
const SPARES: usize = 8;
static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer for the next batch: a written one if any, else a new one of
/// `capacity` bytes.
pub fn buffer(capacity: usize) -> Vec<u8> {
    let spare = SPARE.lock().unwrap_or_else(|e| e.into_inner()).pop();
    spare.unwrap_or_else(|| Vec::with_capacity(capacity))
}

/// Keeps a written batch's buffer for reuse.
fn recycle(mut batch: Vec<u8>) {
    batch.clear();
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    if spare.len() < SPARES {
        spare.push(batch);
    }
}

enum Msg {
    Lines(Vec<u8>),
    /// Open the same file again.
    Reopen,
    /// Write to this file (standard error: `None`) from now on.
    Switch(Option<PathBuf>),
}

static SENDER: OnceLock<SyncSender<Msg>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Lines dropped because the writer could not keep up.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Starts the writer on `path` (standard error when `None`). The file is opened (and
/// created) now, so that an unwritable path is an error at start. Later calls only
/// reopen.
pub fn start(path: Option<&Path>) -> std::io::Result<()> {
    let out = Output::open(path)?;
    if SENDER.get().is_some() {
        switch(path.map(Path::to_owned));
        return Ok(());
    }
    let (tx, rx) = sync_channel(QUEUED);
    std::thread::Builder::new()
        .name("fulcrum-access-log".into())
        .spawn(move || run(rx, out))?;
    let _ = SENDER.set(tx);
    Ok(())
}

/// Opens the log file again (SIGUSR1, after logrotate moved it).
pub fn reopen() {
    if let Some(tx) = SENDER.get() {
        let _ = tx.send(Msg::Reopen);
    }
}

/// Writes to `path` (standard error: `None`) from now on (a reload changed it).
pub fn switch(path: Option<PathBuf>) {
    if let Some(tx) = SENDER.get() {
        let _ = tx.send(Msg::Switch(path));
    }
}

/// Hands a batch of `lines` complete lines to the writer; without one (the writer was
/// not started), writes them to standard error now.
pub fn send(batch: Vec<u8>, lines: u64) {
    match SENDER.get() {
        Some(tx) => match tx.try_send(Msg::Lines(batch)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                DROPPED.fetch_add(lines, Ordering::Relaxed);
            }
        },
        None => write_lines(&mut std::io::stderr().lock(), &batch),
    }
}

enum Output {
    Stderr,
    File(PathBuf, File),
}

impl Output {
    fn open(path: Option<&Path>) -> std::io::Result<Output> {
        Ok(match path {
            None => Output::Stderr,
            Some(p) => Output::File(
                p.to_owned(),
                OpenOptions::new().create(true).append(true).open(p)?,
            ),
        })
    }
}

fn run(rx: Receiver<Msg>, mut out: Output) {
    for msg in rx {
        match msg {
            Msg::Lines(batch) => {
                match &mut out {
                    Output::Stderr => write_lines(&mut std::io::stderr().lock(), &batch),
                    Output::File(_, file) => {
                        let _ = file.write_all(&batch);
                    }
                }
                recycle(batch);
            }
            Msg::Reopen | Msg::Switch(_) => {
                let path = match msg {
                    Msg::Switch(path) => path,
                    _ => match &out {
                        Output::File(p, _) => Some(p.clone()),
                        Output::Stderr => None,
                    },
                };
                match Output::open(path.as_deref()) {
                    Ok(new) => out = new,
                    Err(e) => tracing::error!(
                        path = ?path,
                        error = %e,
                        "cannot open the access log: still writing where it was"
                    ),
                }
            }
        }
    }
}

/// Writes whole lines, at most 4 KiB at a time, so that lines other threads write to the
/// same pipe (the process's own log) never land inside one of them.
fn write_lines(out: &mut impl Write, batch: &[u8]) {
    let mut rest = batch;
    while !rest.is_empty() {
        let mut end = rest.len().min(4096);
        if end < rest.len() {
            end = rest[..end]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(end, |i| i + 1);
        }
        if out.write_all(&rest[..end]).is_err() {
            return;
        }
        rest = &rest[end..];
    }
}
