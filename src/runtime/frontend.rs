//! A listener as its connections use it: what it speaks, its TLS settings, timeouts and
//! limits, its route table (HTTP) or server-name routes (TLS passthrough), and the pools
//! they send to.
//!
//! The listening socket itself is not here: it belongs to the listener module, which
//! binds and closes sockets as reloads add and remove listeners.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{Config, Limits, ListenerConfig, Protocol, Timeouts};
use crate::routing::RouteTable;
use crate::tls::server::{CertStore, server_config};

use super::{BuildError, Pool};
use crate::metrics::Stats;
use crate::policy::ratelimit::Limiter;

/// One listener of the running config.
#[derive(Debug)]
pub struct Frontend {
    /// The snapshot generation it belongs to.
    pub generation: u64,
    /// The listener's name, for logs.
    pub name: Box<str>,
    /// The configured address.
    pub bind: SocketAddr,
    /// What clients speak.
    pub protocol: Protocol,
    /// Connections start with a PROXY protocol header naming the real client.
    pub accept_proxy: bool,
    /// Relay with splice(2) (TCP listeners).
    pub splice: bool,
    /// TLS termination (HTTPS listeners), and the certificates it serves.
    pub tls: Option<(Arc<rustls::ServerConfig>, Arc<CertStore>)>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Limits.
    pub limits: Limits,
    /// Log every request (the access log is on).
    pub access_log: bool,
    /// How the access log writes lines.
    pub log: Arc<crate::accesslog::Settings>,
    /// Where HTTP requests go.
    pub routes: RouteTable,
    /// TLS passthrough (TCP listeners): server-name patterns and the pool each sends to.
    pub sni_routes: Box<[(Box<str>, usize)]>,
    /// Every pool of the snapshot, by config index.
    pub pools: Box<[Arc<Pool>]>,
    /// The config it was built from.
    pub config: ListenerConfig,
    /// Requests to the listener (carried over reloads).
    pub stats: Arc<Stats>,
    /// Requests per route, by route index (carried over reloads by route name).
    pub route_stats: Box<[Arc<Stats>]>,
    /// Every rate limit of the snapshot, by config index.
    pub limiters: Box<[Arc<Limiter>]>,
    /// Every response cache of the snapshot, by config index.
    pub caches: Box<[Arc<crate::content::cache::Cache>]>,
    /// The limits every request of the listener is checked against.
    pub rate_limits: Box<[usize]>,
    /// The limits every new connection is checked against (by client address).
    pub connection_limits: Box<[usize]>,
    /// Which client addresses are accepted, followed when the lists' files change.
    pub access: Arc<crate::policy::lists::LiveAccess>,
}

impl Frontend {
    /// Builds listener `l` of `config`; `previous` is the frontend of the same name in the
    /// running config, whose TLS state (certificates, session cache, ticket keys) is kept
    /// when the TLS settings did not change.
    pub fn build(
        generation: u64,
        l: &ListenerConfig,
        config: &Config,
        pools: &[Arc<Pool>],
        limiters: &[Arc<Limiter>],
        caches: &[Arc<crate::content::cache::Cache>],
        previous: Option<&Frontend>,
    ) -> Result<Frontend, BuildError> {
        let tls = match &l.tls {
            None => None,
            Some(t) => match previous {
                Some(p) if p.config.tls.as_ref() == Some(t) && p.tls.is_some() => p.tls.clone(),
                _ => {
                    let store =
                        CertStore::load(&l.name, &t.certificates).map_err(|e| BuildError::Tls {
                            name: l.name.clone(),
                            message: e.to_string(),
                        })?;
                    let store = Arc::new(store);
                    crate::tls::server::watch(vec![(Arc::clone(&store), t.reload_interval)]);
                    Some((server_config(t, Arc::clone(&store)), store))
                }
            },
        };
        let routes = match l.protocol {
            Protocol::Http => RouteTable::new(l, &config.pools),
            _ => RouteTable::single(l.pool.unwrap_or(0)),
        };
        Ok(Frontend {
            generation,
            name: l.name.as_str().into(),
            bind: l.bind,
            protocol: l.protocol,
            accept_proxy: l.accept_proxy,
            splice: l.splice,
            tls,
            timeouts: config.timeouts,
            limits: config.limits,
            access_log: config.access_log.enabled,
            log: Arc::new(crate::accesslog::Settings::new(&config.access_log)),
            routes,
            sni_routes: l
                .sni_routes
                .iter()
                .map(|(pattern, pool)| (pattern.as_str().into(), *pool))
                .collect(),
            pools: pools.into(),
            limiters: limiters.into(),
            caches: caches.into(),
            rate_limits: l.rate_limits.as_slice().into(),
            connection_limits: l.connection_limits.as_slice().into(),
            access: crate::policy::lists::LiveAccess::new(
                l.access.clone(),
                l.access_sources.clone(),
            ),
            config: l.clone(),
            stats: previous.map_or_else(Arc::default, |p| Arc::clone(&p.stats)),
            route_stats: l
                .routes
                .iter()
                .map(|r| {
                    previous
                        .and_then(|p| p.route_stats_of(&r.name))
                        .unwrap_or_default()
                })
                .collect(),
        })
    }

    /// A request arrived (routed to route `route`, if any): it counts as in flight on
    /// the listener and the route until the log phase records it.
    #[inline]
    pub fn begin(&self, route: Option<usize>) {
        self.stats.begin();
        if let Some(stats) = route.and_then(|i| self.route_stats.get(i)) {
            stats.begin();
        }
    }

    /// The counters of the route named `name`, if there is one.
    fn route_stats_of(&self, name: &str) -> Option<Arc<Stats>> {
        let i = self.routes.routes().iter().position(|r| &*r.name == name)?;
        self.route_stats.get(i).cloned()
    }

    /// The pool of a layer 4 listener (its only pool).
    pub fn default_pool(&self) -> Option<&Arc<Pool>> {
        self.config.pool.and_then(|p| self.pools.get(p))
    }

    /// The rustls settings of a TLS listener.
    pub fn server_tls(&self) -> Option<&Arc<rustls::ServerConfig>> {
        self.tls.as_ref().map(|(c, _)| c)
    }
}
