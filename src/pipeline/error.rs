//! The one error type of the request path: what failed (the client, a backend, or
//! Fulcrum's own limits), whether the request may be sent to another backend, and what the
//! client gets. Every engine turns an [`Error`] into a response the same way
//! ([`super::reply::Reply`]), or closes the connection when the client is gone.

use std::time::Duration;

/// Who an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something wrong, too slowly, or left.
    Client,
    /// A backend could not be reached, failed, or answered wrongly.
    Backend,
    /// Fulcrum itself: no route, no backend available, queue full.
    Proxy,
}

/// Whether a failed try may be repeated on another backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Never (the client is at fault, or something was already sent to the client).
    No,
    /// Nothing reached the backend (the connection failed): repeating costs the backends
    /// nothing, and does not draw on the retry budget.
    Free,
    /// The request reached the backend but nothing came back: it may be repeated if it is
    /// idempotent and still buffered, within the retry budget.
    Budgeted,
}

/// A request that could not be completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    /// Who it is about.
    pub side: Side,
    /// The status the client gets; 0: nothing can be sent, the connection is closed.
    pub status: u16,
    /// Why, shown in the body and the log.
    pub reason: &'static str,
    /// Whether another backend may be tried.
    pub retry: Retry,
    /// For 503s: when to come back (`Retry-After`), in seconds.
    pub retry_after: u32,
}

impl Error {
    const fn new(side: Side, status: u16, reason: &'static str, retry: Retry) -> Error {
        Error {
            side,
            status,
            reason,
            retry,
            retry_after: 1,
        }
    }

    /// The client sent a malformed request: 400.
    pub const fn bad_request(reason: &'static str) -> Error {
        Error::new(Side::Client, 400, reason, Retry::No)
    }

    /// The client's request is refused with `status` (408, 413, 417, 431, 501...).
    pub const fn client(status: u16, reason: &'static str) -> Error {
        Error::new(Side::Client, status, reason, Retry::No)
    }

    /// The client went away, or its connection broke: nothing is sent.
    pub const fn client_gone() -> Error {
        Error::new(
            Side::Client,
            0,
            "the client closed the connection",
            Retry::No,
        )
    }

    /// The backend could not be reached (nothing was sent to it).
    pub const fn unreachable(status: u16, reason: &'static str) -> Error {
        Error::new(Side::Backend, status, reason, Retry::Free)
    }

    /// The backend took the request but gave no response: 502 (or 504 on a timeout).
    pub const fn no_response(status: u16, reason: &'static str) -> Error {
        Error::new(Side::Backend, status, reason, Retry::Budgeted)
    }

    /// The backend broke the exchange in a way that cannot be repeated: 502.
    pub const fn bad_gateway(reason: &'static str) -> Error {
        Error::new(Side::Backend, 502, reason, Retry::No)
    }

    /// The backend did not answer in time: 504.
    pub const fn gateway_timeout(reason: &'static str) -> Error {
        Error::new(Side::Backend, 504, reason, Retry::No)
    }

    /// Fulcrum answers `status` itself.
    pub const fn proxy(status: u16, reason: &'static str) -> Error {
        Error::new(Side::Proxy, status, reason, Retry::No)
    }

    /// The same error with `Retry-After` set to cover `wait`.
    pub fn come_back_in(mut self, wait: Duration) -> Error {
        self.retry_after = wait
            .as_secs()
            .saturating_add(u64::from(wait.subsec_nanos() > 0))
            .clamp(1, 3600) as u32;
        self
    }

    /// Nothing is to be sent to the client: close the connection.
    pub fn is_silent(&self) -> bool {
        self.status == 0
    }

    /// Whether this is the "no backend available" 503 (the pool's `unavailable_body` replaces its text).
    pub fn is_no_backend(&self) -> bool {
        self.reason == NO_BACKEND.reason
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

/// 503: the pool has no available backend (the body can be replaced per pool).
pub const NO_BACKEND: Error = Error::proxy(503, "no backend is available");

/// 503: every usable backend is at its `max_in_flight` and the pool's queue is full.
pub const QUEUE_FULL: Error = Error::proxy(503, "every backend is busy and the queue is full");

/// 503: the request waited `queue_timeout` for a backend with room.
pub const QUEUE_TIMEOUT: Error =
    Error::proxy(503, "every backend stayed busy for the whole queue timeout");

/// 404: no route matched and the listener has no default pool.
pub const NO_ROUTE: Error = Error::proxy(404, "no route matches this request");

/// What the client gets when `backend` could not be reached; logged at debug level.
pub fn cannot_connect(
    backend: &crate::balance::Backend,
    e: &crate::connect::ConnectError,
) -> Error {
    use crate::connect::ConnectError;
    tracing::debug!(backend = %backend.name, error = ?e, "cannot connect to backend");
    match e {
        ConnectError::Timeout => Error::unreachable(504, "connecting to the backend timed out"),
        ConnectError::Failed(_) => Error::unreachable(502, "the backend refused the connection"),
        ConnectError::Tls(_) => {
            Error::unreachable(502, "the TLS handshake with the backend failed")
        }
    }
}

/// The reason phrase of a status Fulcrum sends.
pub fn status_title(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        let e = QUEUE_TIMEOUT.come_back_in(Duration::from_millis(2500));
        assert_eq!(e.retry_after, 3);
        assert_eq!(NO_BACKEND.come_back_in(Duration::ZERO).retry_after, 1);
        assert!(NO_BACKEND.is_no_backend());
        assert!(!QUEUE_FULL.is_no_backend());
    }
}
