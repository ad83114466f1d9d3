//! Session persistence by an inserted cookie, a step of the route and upstream phases:
//! the route phase reads the pool's cookie from the request and finds the backend it
//! names ([`Sticky::find`]); the upstream phase tries that backend first while it is
//! up and has room; the response phase sets the cookie when the request had none or
//! was served elsewhere (its backend went down, or was drained): the client moves,
//! and stays, with the backend that served it.
//!
//! Cookie values are opaque (a keyed hash of pool, backend name and address:
//! `StickyConfig::value_for`), computed when the pool is built, with both `Set-Cookie`
//! values (clear text and TLS), so that the request path only compares and copies.

use std::sync::Arc;

use crate::balance::Backend;
use crate::config::StickyConfig;
use crate::routing::{RequestView, find_cookie};

/// A pool's cookie and what each of its backends is called in it.
#[derive(Debug)]
pub struct Sticky {
    cookie: Box<str>,
    backends: Box<[Entry]>,
}

#[derive(Debug)]
struct Entry {
    backend: Arc<Backend>,
    value: Box<str>,
    /// `Set-Cookie` values: over clear text, over TLS.
    set_cookie: [Box<str>; 2],
}

impl Sticky {
    /// For `backends` of pool `pool` with `config`.
    pub fn new<'b>(
        config: &StickyConfig,
        pool: &str,
        backends: impl Iterator<Item = &'b Arc<Backend>>,
    ) -> Sticky {
        let backends = backends
            .map(|b| {
                let value = config.value_for(pool, &b.name, &b.addr.to_string());
                Entry {
                    set_cookie: [
                        config.set_cookie(&value, false).into(),
                        config.set_cookie(&value, true).into(),
                    ],
                    value: value.into(),
                    backend: Arc::clone(b),
                }
            })
            .collect();
        Sticky {
            cookie: config.cookie.as_str().into(),
            backends,
        }
    }

    /// The backend the request's cookie names (an index for [`Sticky::backend`]), if
    /// it names one of this pool's.
    #[inline]
    pub fn find<V: RequestView + ?Sized>(&self, req: &V) -> Option<u32> {
        let value = req
            .header_values("cookie")
            .find_map(|v| find_cookie(v, self.cookie.as_bytes()))?;
        let i = self
            .backends
            .iter()
            .position(|e| e.value.as_bytes() == value)?;
        u32::try_from(i).ok()
    }

    /// Backend `i` of [`Sticky::find`].
    pub fn backend(&self, i: u32) -> Option<&Arc<Backend>> {
        self.backends.get(i as usize).map(|e| &e.backend)
    }

    /// The `Set-Cookie` value that keeps a client on `backend` (`tls`: it came over
    /// TLS, the cookie is `Secure`).
    pub fn set_cookie(&self, backend: &Arc<Backend>, tls: bool) -> Option<&str> {
        self.backends
            .iter()
            .find(|e| Arc::ptr_eq(&e.backend, backend))
            .map(|e| &*e.set_cookie[usize::from(tls)])
    }
}
