//! The control socket: how `fulcrum reload` reaches a running Fulcrum and gets its
//! answer (the changes, or the config errors with FILE:LINE:COL).
//!
//! It is a Unix socket, mode 0600, at `control_socket` in the config or, by default, at
//! a path derived from the config file's absolute path (so that `fulcrum reload -c FILE`
//! finds the process started with `fulcrum run -c FILE`). The protocol is one line in
//! (`reload`), then the answer's lines and the connection closed; the first line of the
//! answer is `ok` or `error`. `takeover` is answered with the listening sockets
//! themselves (see `listener::handover`), after which the process stops gracefully.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Where the control socket of the Fulcrum running `config_file` is.
pub fn socket_path(configured: Option<&Path>, config_file: &Path) -> PathBuf {
    if let Some(path) = configured {
        return path.to_owned();
    }
    let absolute = std::fs::canonicalize(config_file).unwrap_or_else(|_| config_file.to_owned());
    let hash = crate::balance::hash::hash_bytes(absolute.as_os_str().as_encoded_bytes());
    PathBuf::from(format!("/tmp/fulcrum-{:016x}.sock", hash))
}

/// A request received on the control socket.
#[derive(Debug)]
pub struct Request {
    /// What was asked (`reload`).
    pub command: String,
    stream: tokio::net::UnixStream,
}

impl Request {
    /// The connection, as a blocking standard socket (for the socket hand-over).
    pub fn into_std(self) -> std::io::Result<std::os::unix::net::UnixStream> {
        let stream = self.stream.into_std()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    }

    /// Sends the answer (`ok` then `lines`, or `error` then `lines`) and closes.
    pub async fn answer(mut self, ok: bool, lines: &[String]) {
        use tokio::io::AsyncWriteExt;
        let mut text = String::from(if ok { "ok\n" } else { "error\n" });
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        let _ = self.stream.write_all(text.as_bytes()).await;
        let _ = self.stream.shutdown().await;
    }
}

/// The listening control socket.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::UnixListener,
    path: PathBuf,
}

impl Server {
    /// Binds the control socket at `path` (replacing a stale one). Must be called within
    /// a tokio runtime.
    pub fn bind(path: &Path) -> std::io::Result<Server> {
        use std::os::unix::fs::PermissionsExt;
        if path.exists() {
            // A live Fulcrum answers; only a stale socket is replaced.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another Fulcrum is using this control socket",
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = tokio::net::UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Server {
            listener,
            path: path.to_owned(),
        })
    }

    /// The next request.
    pub async fn next(&self) -> Request {
        use tokio::io::AsyncBufReadExt;
        loop {
            let Ok((stream, _)) = self.listener.accept().await else {
                continue;
            };
            let mut reader = tokio::io::BufReader::new(stream);
            let mut line = String::new();
            let read = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                reader.read_line(&mut line),
            )
            .await;
            if !matches!(read, Ok(Ok(n)) if n > 0) {
                continue;
            }
            return Request {
                command: line.trim().to_owned(),
                stream: reader.into_inner(),
            };
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Asks the Fulcrum whose control socket is at `path` for its listening sockets. It
/// keeps serving until [`Takeover::ready`] says this process accepts on them (then it
/// stops gracefully); if this process fails before that, the old one carries on.
pub fn take_over(path: &Path) -> std::io::Result<Takeover> {
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    stream.write_all(b"takeover\n")?;
    let sockets = crate::listener::handover::receive(&mut stream)?;
    Ok(Takeover { sockets, stream })
}

/// Sockets taken over, and the line back to the process they came from.
#[derive(Debug)]
pub struct Takeover {
    /// The listening sockets.
    pub sockets: Vec<crate::listener::handover::Inherited>,
    stream: std::os::unix::net::UnixStream,
}

impl Takeover {
    /// Tells the old process that this one accepts on the sockets: it stops now.
    pub fn ready(mut self) {
        let _ = self.stream.write_all(b"ready\n");
    }
}

/// On the old process's side: waits (up to `limit`) for the new process to say it is
/// accepting on the sockets it was given.
pub fn wait_ready(stream: &std::os::unix::net::UnixStream, limit: std::time::Duration) -> bool {
    let _ = stream.set_read_timeout(Some(limit));
    let mut line = String::new();
    matches!(BufReader::new(stream).read_line(&mut line), Ok(n) if n > 0) && line.trim() == "ready"
}

/// Sends `command` to the control socket at `path`; returns whether the answer was `ok`,
/// and its lines.
pub fn send(path: &Path, command: &str) -> std::io::Result<(bool, Vec<String>)> {
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.write_all(command.as_bytes())?;
    stream.write_all(b"\n")?;
    let mut lines = BufReader::new(stream).lines();
    let first = lines.next().transpose()?.unwrap_or_default();
    let rest = lines.collect::<Result<Vec<_>, _>>()?;
    Ok((first == "ok", rest))
}
