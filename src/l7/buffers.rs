//! Buffers only while bytes move: each worker thread keeps a small pool of read buffers
//! and head buffers, which a connection takes when a request starts arriving and gives
//! back once its exchange is over, as HAProxy's buffer pools do. An idle kept-alive
//! connection holds no buffer at all.
//!
//! The pools are thread-local (no lock), bounded ([`KEPT`] buffers of each kind per
//! worker), and never keep a buffer that grew past [`LARGEST`].

use std::cell::RefCell;

use bytes::BytesMut;

/// Buffers of each kind kept per worker thread.
pub const KEPT: usize = 32;
/// A buffer larger than this is freed rather than kept.
pub const LARGEST: usize = 256 * 1024;
/// The size of a new read buffer.
pub const READ: usize = 8 * 1024;

thread_local! {
    static BYTES: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static VECS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty read buffer with room for at least [`READ`] bytes.
pub fn take_bytes() -> BytesMut {
    BYTES
        .with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(READ))
}

/// Gives a read buffer back (emptied).
pub fn give_bytes(mut b: BytesMut) {
    b.clear();
    if b.capacity() < READ || b.capacity() > LARGEST {
        return;
    }
    BYTES.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < KEPT {
            p.push(b);
        }
    });
}

/// An empty head buffer.
pub fn take_vec() -> Vec<u8> {
    VECS.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(4 * 1024))
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
