//! gRPC awareness: Fulcrum's own errors reach gRPC clients as gRPC statuses (a
//! "trailers-only" response: HTTP 200, `grpc-status`, `grpc-message`), as Envoy does, and
//! the client's `grpc-timeout` bounds how long Fulcrum waits for the backend.

use std::time::Duration;

use hyper::HeaderMap;

/// Whether a request is a gRPC call.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The gRPC status code for an HTTP status Fulcrum would have answered with.
pub fn status_for(http: u16) -> u8 {
    match http {
        // DEADLINE_EXCEEDED
        504 | 408 => 4,
        // RESOURCE_EXHAUSTED
        429 | 431 => 8,
        // UNIMPLEMENTED: nothing routes the call
        404 => 12,
        // UNAVAILABLE
        502 | 503 => 14,
        // INTERNAL
        _ => 13,
    }
}

/// The deadline carried by a `grpc-timeout` header ("100m", "5S", ...), if valid.
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.as_bytes();
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(n * 3600),
        b"M" => Duration::from_secs(n * 60),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(timeout: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("grpc-timeout", timeout.parse().unwrap());
        h
    }

    #[test]
    fn grpc_timeouts_are_parsed_in_every_unit() {
        assert_eq!(timeout(&headers("2H")), Some(Duration::from_secs(7200)));
        assert_eq!(timeout(&headers("3M")), Some(Duration::from_secs(180)));
        assert_eq!(timeout(&headers("5S")), Some(Duration::from_secs(5)));
        assert_eq!(timeout(&headers("300m")), Some(Duration::from_millis(300)));
        assert_eq!(timeout(&headers("7u")), Some(Duration::from_micros(7)));
        assert_eq!(timeout(&headers("9n")), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "5", "5x", "-5S", "123456789S", "1.5S"] {
            assert_eq!(timeout(&headers(bad)), None, "{bad}");
        }
        assert_eq!(timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn fulcrum_errors_map_to_grpc_statuses() {
        assert_eq!(status_for(503), 14);
        assert_eq!(status_for(502), 14);
        assert_eq!(status_for(504), 4);
        assert_eq!(status_for(400), 13);
    }
}
