//! What a reload changes, in a few lines a person reads: listeners, routes, pools,
//! backends and weights added, removed or changed.

use crate::config::{Config, ListenerConfig, PoolConfig};

/// The changes from `old` to `new`, one line each; empty when nothing changed.
pub fn describe(old: &Config, new: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    for l in &new.listeners {
        match old.listeners.iter().find(|o| o.name == l.name) {
            None => lines.push(format!("+ listener {} on {}", l.name, l.bind)),
            Some(o) if o.bind != l.bind => lines.push(format!(
                "~ listener {}: {} -> {} (rebound)",
                l.name, o.bind, l.bind
            )),
            Some(o) => listener_changes(o, l, old, new, &mut lines),
        }
    }
    for o in &old.listeners {
        if !new.listeners.iter().any(|l| l.name == o.name) {
            lines.push(format!("- listener {} on {}", o.name, o.bind));
        }
    }
    for p in &new.pools {
        match old.pools.iter().find(|o| o.name == p.name) {
            None => lines.push(format!(
                "+ pool {} ({} backend{})",
                p.name,
                p.backends.len(),
                if p.backends.len() == 1 { "" } else { "s" }
            )),
            Some(o) => pool_changes(o, p, &mut lines),
        }
    }
    for o in &old.pools {
        if !new.pools.iter().any(|p| p.name == o.name) {
            lines.push(format!("- pool {}", o.name));
        }
    }
    if old.admin != new.admin {
        lines.push("~ [admin] changed (takes effect at the next start)".into());
    }
    match (&old.shared, &new.shared) {
        (None, Some(_)) => lines.push("+ [shared] (stick tables and rate limits shared through Redis; their state starts anew)".into()),
        (Some(_), None) => lines.push("- [shared] (each instance keeps its own state; stick tables and rate limits start anew)".into()),
        (Some(o), Some(n)) if o != n => lines.push("~ [shared] changed (reconnecting)".into()),
        _ => {}
    }
    if old.timeouts != new.timeouts {
        lines.push("~ timeouts".into());
    }
    if old.limits != new.limits {
        lines.push("~ limits".into());
    }
    if old.access_log != new.access_log {
        lines.push("~ access_log changed".into());
    }
    if old.shutdown_grace != new.shutdown_grace {
        lines.push(format!(
            "~ shutdown_grace: {:?} -> {:?}",
            old.shutdown_grace, new.shutdown_grace
        ));
    }
    if old.shutdown_delay != new.shutdown_delay {
        lines.push(format!(
            "~ shutdown_delay: {:?} -> {:?}",
            old.shutdown_delay, new.shutdown_delay
        ));
    }
    if old.threads != new.threads {
        lines.push(format!(
            "! threads: {} -> {} takes effect at the next start",
            old.threads, new.threads
        ));
    }
    lines
}

fn pool_name(c: &Config, i: Option<usize>) -> &str {
    i.and_then(|i| c.pools.get(i))
        .map_or("-", |p| p.name.as_str())
}

fn listener_changes(
    o: &ListenerConfig,
    l: &ListenerConfig,
    old: &Config,
    new: &Config,
    lines: &mut Vec<String>,
) {
    let (from, to) = (pool_name(old, o.pool), pool_name(new, l.pool));
    if from != to {
        lines.push(format!(
            "~ listener {}: default pool {from} -> {to}",
            l.name
        ));
    }
    for r in &l.routes {
        match o.routes.iter().find(|x| x.name == r.name) {
            None => lines.push(format!("+ route {} on listener {}", r.name, l.name)),
            // Pool indexes may differ between the two configs: compare by what they say.
            Some(x) if route_text(old, x) != route_text(new, r) => lines.push(format!(
                "~ route {} on listener {}: {}",
                r.name,
                l.name,
                action_text(new, &r.action)
            )),
            Some(_) => {}
        }
    }
    for x in &o.routes {
        if !l.routes.iter().any(|r| r.name == x.name) {
            lines.push(format!("- route {} on listener {}", x.name, l.name));
        }
    }
    let order = |ls: &ListenerConfig| ls.routes.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    let (a, b) = (order(o), order(l));
    let common: Vec<_> = b.iter().filter(|n| a.contains(n)).collect();
    let before: Vec<_> = a.iter().filter(|n| b.contains(n)).collect();
    if common != before {
        lines.push(format!("~ routes of listener {} reordered", l.name));
    }
    if o.tls != l.tls {
        lines.push(format!("~ listener {}: TLS settings", l.name));
    }
    if o.protocol != l.protocol {
        lines.push(format!(
            "~ listener {}: protocol {:?} -> {:?}",
            l.name, o.protocol, l.protocol
        ));
    }
    if o.max_connections != l.max_connections
        || o.accept_proxy != l.accept_proxy
        || o.splice != l.splice
        || sni_text(old, o) != sni_text(new, l)
    {
        lines.push(format!("~ listener {}: settings", l.name));
    }
}

/// A route as text, pools named rather than numbered.
fn route_text(c: &Config, r: &crate::config::routes::RouteConfig) -> String {
    use crate::config::routes::RouteAction;
    let mut plain = r.clone();
    // Pool indexes differ between configs; everything else is compared as written.
    let details = match &r.action {
        RouteAction::Split { key, .. } => format!("{key:?}"),
        RouteAction::Redirect(x) => format!("{x:?}"),
        RouteAction::Respond(x) => format!("{x:?}"),
        RouteAction::Files(x) => format!("{x:?}"),
        RouteAction::Pool(_) => String::new(),
    };
    plain.action = RouteAction::Pool(0);
    plain.fallback = None;
    format!(
        "{plain:?} {} {details} {}",
        action_text(c, &r.action),
        pool_name(c, r.fallback)
    )
}

fn sni_text(c: &Config, l: &ListenerConfig) -> Vec<(String, String)> {
    l.sni_routes
        .iter()
        .map(|(p, i)| (p.clone(), pool_name(c, Some(*i)).to_owned()))
        .collect()
}

fn action_text(c: &Config, a: &crate::config::routes::RouteAction) -> String {
    use crate::config::routes::RouteAction;
    match a {
        RouteAction::Pool(p) => format!("pool {}", pool_name(c, Some(*p))),
        RouteAction::Split { sides, .. } => {
            let parts: Vec<String> = sides
                .iter()
                .map(|(p, w)| format!("{} {w}", pool_name(c, Some(*p))))
                .collect();
            format!("split {}", parts.join(" / "))
        }
        RouteAction::Redirect(r) => format!("redirect {}", r.status),
        RouteAction::Respond(f) => format!("respond {}", f.status),
        RouteAction::Files(f) => format!("files {}", f.root.display()),
    }
}

fn pool_changes(o: &PoolConfig, p: &PoolConfig, lines: &mut Vec<String>) {
    for b in &p.backends {
        match o
            .backends
            .iter()
            .find(|x| x.address == b.address && x.name == b.name)
        {
            None => lines.push(format!(
                "+ backend {} ({}) in pool {}",
                b.name, b.address, p.name
            )),
            Some(x) if x.weight != b.weight => lines.push(format!(
                "~ backend {} in pool {}: weight {} -> {}",
                b.name, p.name, x.weight, b.weight
            )),
            Some(x) if x.backup != b.backup => lines.push(format!(
                "~ backend {} in pool {}: backup {} -> {}",
                b.name, p.name, x.backup, b.backup
            )),
            Some(_) => {}
        }
    }
    for x in &o.backends {
        if !p
            .backends
            .iter()
            .any(|b| b.address == x.address && b.name == x.name)
        {
            lines.push(format!(
                "- backend {} ({}) from pool {}",
                x.name, x.address, p.name
            ));
        }
    }
    let settings = |c: &PoolConfig| {
        let mut c = c.clone();
        c.backends.clear();
        c
    };
    if settings(o) != settings(p) {
        lines.push(format!("~ pool {}: settings", p.name));
    }
}
