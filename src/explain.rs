//! `fulcrum explain` (and `fulcrum ctl explain`, `GET /api/explain`): what Fulcrum does
//! with one request, step by step: which listener takes it, each route in order and why
//! it does or does not match, the decision (pool, fallback, split side, redirect, fixed
//! response, 404), the pool's backends with their state, and the backend the algorithm
//! would pick.
//!
//! It runs the real route phase (`pipeline::route`) and the pool's real selector on a
//! request described on the command line, against a snapshot: one built from the file
//! (every backend reads as up), or the running one (live health, circuits, drains). On
//! a running instance, asking for the pick takes one turn of a rotating algorithm.

use std::net::IpAddr;

use crate::pipeline::{self, Decision};
use crate::routing::RequestView;
use crate::routing::matcher::Seen;
use crate::runtime::{Frontend, Snapshot};

/// The request to explain.
#[derive(Debug, Clone)]
pub struct Probe {
    /// `GET`, `POST`...
    pub method: String,
    /// `http://host[:port]/path?query` (or `https://`).
    pub url: String,
    /// Extra headers, as `(name, value)`.
    pub headers: Vec<(String, String)>,
    /// The client's address.
    pub client: IpAddr,
    /// The listener to use (default: the one on the URL's port, else the first HTTP one).
    pub listener: Option<String>,
}

/// The request as routing sees it.
struct View<'a> {
    method: &'a [u8],
    host: &'a [u8],
    path: &'a [u8],
    query: Option<&'a [u8]>,
    headers: Vec<(String, &'a [u8])>,
    client: IpAddr,
}

impl RequestView for View<'_> {
    fn method(&self) -> &[u8] {
        self.method
    }
    fn host(&self) -> Option<&[u8]> {
        Some(self.host)
    }
    fn path(&self) -> &[u8] {
        self.path
    }
    fn query(&self) -> Option<&[u8]> {
        self.query
    }
    fn header_values<'b>(&'b self, name: &'b str) -> impl Iterator<Item = &'b [u8]> + 'b {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
    fn client_ip(&self) -> IpAddr {
        self.client
    }
}

/// The explanation, a line each; `live`: the snapshot is the running one.
pub fn explain(snapshot: &Snapshot, probe: &Probe, live: bool) -> Result<Vec<String>, String> {
    let (tls, rest) = if let Some(rest) = probe.url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = probe.url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!(
            "`{}` is not a URL: write it as http://HOST/PATH or https://HOST/PATH",
            probe.url
        ));
    };
    let (authority, target) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let target = target.split('#').next().unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let port: u16 = match authority.rsplit_once(':') {
        Some((_, p)) if !authority.ends_with(']') => p
            .parse()
            .map_err(|_| format!("bad port in `{authority}`"))?,
        _ if tls => 443,
        _ => 80,
    };
    let method = probe.method.to_ascii_uppercase();
    let view = View {
        method: method.as_bytes(),
        host: authority.as_bytes(),
        path: path.as_bytes(),
        query: query.map(str::as_bytes),
        headers: probe
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes()))
            .collect(),
        client: probe.client,
    };
    let mut out = vec![format!(
        "request: {method} {} from {}{}",
        probe.url,
        probe.client,
        if probe.headers.is_empty() {
            String::new()
        } else {
            let h: Vec<String> = probe
                .headers
                .iter()
                .map(|(n, v)| format!("{n}: {v}"))
                .collect();
            format!(", with {}", h.join(", "))
        }
    )];
    let (frontend, why) = listener(snapshot, probe, port)?;
    out.push(format!(
        "listener: {} ({}), {why}",
        frontend.name, frontend.bind
    ));
    routes(frontend, &view, &mut out);
    decision(frontend, &view, tls, live, &mut out);
    Ok(out)
}

fn listener<'s>(
    snapshot: &'s Snapshot,
    probe: &Probe,
    port: u16,
) -> Result<(&'s Frontend, String), String> {
    let http = || {
        snapshot
            .frontends
            .iter()
            .filter(|f| f.protocol == crate::config::Protocol::Http)
    };
    if let Some(name) = &probe.listener {
        let f = snapshot
            .frontend(name)
            .ok_or_else(|| format!("no listener named `{name}`"))?;
        return Ok((f, "as asked".into()));
    }
    if let Some(f) = http().find(|f| f.bind.port() == port) {
        return Ok((f, format!("the HTTP listener on port {port}")));
    }
    let f = http()
        .next()
        .ok_or("the config has no HTTP listener: nothing to explain")?;
    Ok((
        f,
        format!("the first HTTP listener (none listens on port {port}; --listener picks another)"),
    ))
}

fn routes(frontend: &Frontend, view: &View<'_>, out: &mut Vec<String>) {
    let routes = frontend.routes.routes();
    if routes.is_empty() {
        out.push("routes: none; everything goes to the default pool".into());
        return;
    }
    out.push("routes, in order (the first match wins):".into());
    let mut seen = Seen::default();
    for (i, r) in routes.iter().enumerate() {
        match r.matcher().unmet(view, &mut seen) {
            Some(unmet) => out.push(format!(
                "  {}. {:<12} no: needs {}",
                i + 1,
                r.name,
                r.matcher().describe(unmet)
            )),
            None => {
                out.push(format!("  {}. {:<12} MATCHES", i + 1, r.name));
                if i + 1 < routes.len() {
                    out.push(format!(
                        "     (the {} route(s) after it are not looked at)",
                        routes.len() - i - 1
                    ));
                }
                return;
            }
        }
    }
    out.push("  no route matches".into());
}

fn decision(frontend: &Frontend, view: &View<'_>, tls: bool, live: bool, out: &mut Vec<String>) {
    let route_name = |i: usize| frontend.routes.routes()[i].name.to_string();
    match pipeline::route(frontend, view, tls) {
        Decision::NotFound => out.push(
            "decision: 404 Not Found: no route matches and the listener has no default pool".into(),
        ),
        Decision::Redirect {
            route,
            status,
            location,
        } => out.push(format!(
            "decision: redirect {status} to {location} (route `{}`)",
            route_name(route)
        )),
        Decision::Denied { .. } => out.push("decision: refused by the route's auth service".into()),
        Decision::Refuse { refusal, .. } => {
            let (field, value) = refusal.log_field();
            out.push(format!(
                "decision: refused ({field}={value}): {}",
                refusal.reason()
            ));
        }
        Decision::Cached { route, .. } => {
            let r = &frontend.routes.routes()[route];
            out.push(format!(
                "decision: answered from the cache (route `{}`)",
                r.name
            ));
        }
        Decision::Files { route, .. } => {
            let r = &frontend.routes.routes()[route];
            let root = r
                .files()
                .map_or_else(String::new, |(f, _)| f.config.root.display().to_string());
            out.push(format!(
                "decision: serve files from {root} (route `{}`)",
                r.name
            ));
        }
        Decision::Respond(route) => {
            let r = &frontend.routes.routes()[route];
            let status = r.fixed_response().map_or(0, |f| f.status);
            out.push(format!(
                "decision: fixed response {status} (route `{}`)",
                r.name
            ));
        }
        Decision::Forward(fwd) => {
            let by = match fwd.route {
                Some(i) => format!("route `{}`", route_name(i)),
                None => "the listener's default pool".into(),
            };
            out.push(format!(
                "decision: forward to pool `{}` ({by})",
                fwd.pool.name
            ));
            if let Some(r) = fwd.route.map(|i| &frontend.routes.routes()[i]) {
                if let Some(fallback) = r.fallback
                    && frontend.pools.get(fallback).map(|p| &p.name) == Some(&fwd.pool.name)
                {
                    out.push(
                        "  the route's own pool has no backend up: its fallback pool takes it"
                            .into(),
                    );
                }
                if r.is_split() {
                    out.push(match fwd.new_side {
                        Some(side) => format!(
                            "  split: a new client, given side {} by weight (the response sets its cookie)",
                            side + 1
                        ),
                        None => "  split: the client keeps its side (its cookie or hash key)".into(),
                    });
                }
            }
            pool(&fwd.pool, fwd.key, live, out);
        }
    }
}

fn pool(pool: &crate::runtime::Pool, key: u64, live: bool, out: &mut Vec<String>) {
    let b = &pool.balancer;
    let mut line = format!("pool `{}`: {}", pool.name, pool.config.algorithm.name());
    if b.uses_key() {
        line.push_str(&format!(
            ", hash key `{}` (the source IP when it is missing) = {key:#018x}",
            b.hash_key
        ));
    }
    out.push(line);
    for backend in b.backends() {
        out.push(format!(
            "  {:<12} {:<22} weight {:<4} {}{}, in flight {}",
            backend.name,
            backend.addr,
            backend.weight(),
            crate::admin::status(backend),
            if backend.is_backup() { ", backup" } else { "" },
            backend.in_flight()
        ));
    }
    let state = if live {
        "with the running state"
    } else {
        "from the file: every backend counts as up"
    };
    out.push(match b.pick(key) {
        Some(chosen) => format!("would pick: {} ({state})", chosen.name),
        None => format!("would pick: none, no backend is available: 503 ({state})"),
    });
}

/// `fulcrum explain` arguments (and `fulcrum ctl explain`'s request).
#[derive(Debug, clap::Args)]
pub struct RequestArgs {
    /// A request header (repeat the flag for more): `Name: value`.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The client's address.
    #[arg(long, default_value = "127.0.0.1")]
    pub client: IpAddr,
    /// The listener to use (default: the one on the URL's port, else the first HTTP one).
    #[arg(long)]
    pub listener: Option<String>,
    /// The method: GET, POST...
    pub method: String,
    /// The URL: http://HOST[:PORT]/PATH?QUERY (or https://).
    pub url: String,
}

impl RequestArgs {
    /// The probe these arguments describe.
    pub fn probe(&self) -> Result<Probe, String> {
        let headers = self
            .headers
            .iter()
            .map(|h| {
                h.split_once(':')
                    .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                    .ok_or_else(|| format!("bad header `{h}`: write it as `Name: value`"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Probe {
            method: self.method.clone(),
            url: self.url.clone(),
            headers,
            client: self.client,
            listener: self.listener.clone(),
        })
    }
}

/// `fulcrum explain -c FILE ...`: explains against the file; returns the exit code.
pub fn main(config: &std::path::Path, args: &RequestArgs) -> i32 {
    let config = match crate::config::Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let snapshot = match Snapshot::build(config, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match args.probe().and_then(|p| explain(&snapshot, &p, false)) {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
