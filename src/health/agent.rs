//! Agent checks: a backend (or an agent beside it) says how loaded it is and whether it
//! wants traffic, as HAProxy's `agent-check`. Fulcrum connects to the agent's TCP port
//! every interval and reads one line of words:
//!
//! - `75%`: take 75 % of the configured weight (HAProxy's meaning: capacity left);
//! - `load=0.72`, `cpu=0.72` (or `cpu=72%`): the backend is 72 % busy (capacity left
//!   0.28); several named values: the busiest counts (ORCA-style `cpu=0.7, mem=0.4`);
//! - `drain`: no new requests (as `fulcrum ctl drain`); `down`, `stopped`, `maint`,
//!   `fail`: out of rotation; `up`, `ready`: back (undoes the agent's own `drain` or
//!   `down` only).
//!
//! The same load values may come with every response, in a header the pool names
//! (`X-Backend-Load: cpu=0.72`), parsed by [`parse_load`]. A backend's capacity left
//! scales its weight for every algorithm, and `least_load` balances on it. An agent that
//! does not answer changes nothing: the last report stays, as in HAProxy.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::balance::Backend;
use crate::balance::backend::AgentState;
use crate::config::AgentCheck;

/// What one agent line said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// Capacity left, in thousandths (1000: all of it), if the line said.
    pub headroom: Option<u32>,
    /// The state it asked for, if any.
    pub state: Option<AgentState>,
}

/// Parses one agent line. Unknown words are ignored (HAProxy ignores what it does not
/// know, and agents send extras such as `maxconn:30`).
pub fn parse(line: &str) -> Report {
    let mut report = Report::default();
    let mut busiest: Option<u32> = None;
    for word in line
        .split(|c: char| c.is_ascii_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
    {
        let word = word.split('#').next().unwrap_or("");
        let lower = word.to_ascii_lowercase();
        match lower.as_str() {
            "up" | "ready" => report.state = Some(AgentState::Up),
            "drain" => report.state = Some(AgentState::Drain),
            "down" | "stopped" | "maint" | "fail" => report.state = Some(AgentState::Down),
            _ => {
                if let Some(percent) = lower.strip_suffix('%').and_then(number)
                    && !lower.contains('=')
                {
                    report.headroom = Some(permille(percent / 100.0));
                    continue;
                }
                if let Some(load) = parse_load(&lower) {
                    busiest = Some(busiest.map_or(load, |b| b.max(load)));
                }
            }
        }
    }
    if let Some(load) = busiest {
        report.headroom = Some(1000 - load);
    }
    report
}

/// The load in thousandths (1000: fully busy) in `text`: `name=0.72`, `name=72%` or a
/// bare `0.72`, several separated by commas or spaces (the busiest counts). `None`
/// when nothing in it is a load.
pub fn parse_load(text: &str) -> Option<u32> {
    let mut busiest: Option<u32> = None;
    for part in text
        .split(|c: char| c.is_ascii_whitespace() || c == ',' || c == ';')
        .filter(|w| !w.is_empty())
    {
        let value = part.rsplit_once('=').map_or(part, |(_, v)| v);
        let load = match value.strip_suffix('%') {
            Some(p) => number(p).map(|p| p / 100.0),
            None if part.contains('=') || value.contains('.') || value == "0" || value == "1" => {
                number(value)
            }
            None => None,
        };
        if let Some(load) = load {
            let l = permille(load);
            busiest = Some(busiest.map_or(l, |b| b.max(l)));
        }
    }
    busiest
}

fn number(text: &str) -> Option<f64> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
}

fn permille(fraction: f64) -> u32 {
    (fraction.clamp(0.0, 1.0) * 1000.0).round() as u32
}

/// Asks the agent of `backend` every interval, for ever, and applies what it says.
pub async fn watch(pool: Arc<str>, backend: Arc<Backend>, agent: Arc<AgentCheck>) {
    let Some(port) = agent.port else {
        return;
    };
    let addr = std::net::SocketAddr::new(backend.addr.ip(), port);
    tokio::time::sleep(agent.interval.mul_f64(fastrand::f64() * 0.1)).await;
    let mut failing = false;
    loop {
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(agent.timeout, ask(addr, agent.send.as_deref())).await {
            Ok(Ok(line)) => {
                if failing {
                    tracing::info!(pool = %pool, backend = %backend.name, "agent answers again");
                    failing = false;
                }
                apply(&pool, &backend, parse(&line));
            }
            Ok(Err(e)) if !failing => {
                tracing::warn!(pool = %pool, backend = %backend.name, agent = %addr, error = %e, "agent check failed: its last report stays");
                failing = true;
            }
            Err(_) if !failing => {
                tracing::warn!(pool = %pool, backend = %backend.name, agent = %addr, "agent check timed out: its last report stays");
                failing = true;
            }
            _ => {}
        }
        tokio::time::sleep_until(started + agent.interval).await;
    }
}

/// One exchange with an agent: connect, send `send` if any, read its line.
async fn ask(addr: std::net::SocketAddr, send: Option<&str>) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    if let Some(text) = send {
        stream.write_all(text.as_bytes()).await?;
    }
    let mut line = Vec::with_capacity(64);
    let mut chunk = [0u8; 256];
    while line.len() < 1024 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&chunk[..n]);
        if line.contains(&b'\n') {
            break;
        }
    }
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    Ok(String::from_utf8_lossy(&line[..end]).trim().to_owned())
}

/// Applies a report to `backend`, logging changes of state.
pub fn apply(pool: &str, backend: &Backend, report: Report) {
    if let Some(headroom) = report.headroom {
        backend.set_headroom(headroom);
    }
    if let Some(state) = report.state
        && backend.set_agent_state(state)
    {
        let (event, text) = match state {
            AgentState::Up => ("agent_up", "the agent says up: back in rotation"),
            AgentState::Drain => ("agent_drain", "the agent says drain: no new requests"),
            AgentState::Down => ("agent_down", "the agent says down: out of rotation"),
        };
        crate::metrics::events::record(pool, &backend.name, event, text.to_owned());
        tracing::info!(pool = %pool, backend = %backend.name, "{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_lines() {
        assert_eq!(parse("75%").headroom, Some(750));
        assert_eq!(parse("75%\n").headroom, Some(750));
        assert_eq!(parse("load=0.9").headroom, Some(100));
        assert_eq!(parse("cpu=72%").headroom, Some(280));
        assert_eq!(parse("cpu=0.7, mem=0.4").headroom, Some(300));
        let r = parse("up 50% maxconn:30");
        assert_eq!((r.state, r.headroom), (Some(AgentState::Up), Some(500)));
        assert_eq!(parse("drain").state, Some(AgentState::Drain));
        assert_eq!(parse("DOWN#disk full").state, Some(AgentState::Down));
        assert_eq!(parse("stopped").state, Some(AgentState::Down));
        assert_eq!(parse("150%").headroom, Some(1000));
        assert_eq!(parse("hello"), Report::default());
        assert_eq!(parse(""), Report::default());
    }

    #[test]
    fn load_headers() {
        assert_eq!(parse_load("cpu=0.72"), Some(720));
        assert_eq!(parse_load("0.5"), Some(500));
        assert_eq!(parse_load("72%"), Some(720));
        assert_eq!(
            parse_load("cpu_utilization=0.3, mem_utilization=0.6"),
            Some(600)
        );
        assert_eq!(parse_load("cpu=banana"), None);
        assert_eq!(parse_load("7"), None);
        assert_eq!(parse_load("cpu=2.5"), Some(1000));
    }
}
