//! Buffers only while bytes move: each worker thread keeps a small pool of read buffers
//! and head buffers, which a connection takes when a request starts arriving and gives
//! back once its exchange is over, as HAProxy's buffer pools do. An idle kept-alive
//! connection holds no buffer at all.
//!
//! The pools are thread-local (no lock), bounded ([`KEPT`] buffers of each kind per
//! worker), and never keep a buffer that grew past [`LARGEST`].

use std::cell::RefCell;

use bytes::BytesMut;

/// Buffers of each kind kept per worker thread: enough for that many requests in flight
/// at once without going back to the allocator.
pub const KEPT: usize = 128;
/// A buffer larger than this is freed rather than kept.
pub const LARGEST: usize = 256 * 1024;
/// The size of a new backend read buffer: a response head and a small body.
pub const READ: usize = 8 * 1024;
/// The size of a new client read buffer: most request heads fit in it (a larger one
/// grows it, and the pool keeps it grown). Small, because a slow client holds one.
pub const CLIENT_READ: usize = 2 * 1024;
/// The size of a new head buffer (a head being written).
pub const HEAD: usize = 1024;

/// Which side a read buffer reads: client buffers stay small (a slow client holds one),
/// backend buffers grow to the engine's read size once and stay so.
#[derive(Debug, Clone, Copy)]
pub enum Side {
    /// Bytes from the client.
    Client,
    /// Bytes from a backend.
    Backend,
}

thread_local! {
    static CLIENT: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static BACKEND: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static VECS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

impl Side {
    fn pool(self) -> &'static std::thread::LocalKey<RefCell<Vec<BytesMut>>> {
        match self {
            Side::Client => &CLIENT,
            Side::Backend => &BACKEND,
        }
    }

    /// The size of a new buffer.
    fn size(self) -> usize {
        match self {
            Side::Client => CLIENT_READ,
            Side::Backend => READ,
        }
    }
}

/// An empty read buffer for `side`.
pub fn take_bytes(side: Side) -> BytesMut {
    side.pool()
        .with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(side.size()))
}

/// Gives a read buffer of `side` back (emptied).
pub fn give_bytes(side: Side, mut b: BytesMut) {
    b.clear();
    // Consumed bytes at the front still belong to the buffer: reclaim them (an empty
    // buffer is only rewound, nothing is copied or allocated).
    if b.capacity() < side.size() {
        b.reserve(side.size());
    }
    if b.capacity() > LARGEST {
        return;
    }
    side.pool().with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < KEPT {
            p.push(b);
        }
    });
}

/// An empty head buffer.
pub fn take_vec() -> Vec<u8> {
    VECS.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(HEAD))
}

/// Gives a head buffer back (emptied).
pub fn give_vec(mut v: Vec<u8>) {
    v.clear();
    if v.capacity() == 0 || v.capacity() > LARGEST {
        return;
    }
    VECS.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < KEPT {
            p.push(v);
        }
    });
}
