//! The streams of one HTTP/2 client connection, all driven by the connection's task:
//! each stream has a slot, and each slot a waker of its own that marks the slot ready
//! (a bit in [`Ready`]) and wakes the task. The task then polls only the streams whose
//! bit is set: a request being handled, or a response body being sent.
//!
//! Slots and their wakers are made as the connection first needs them (up to its stream
//! limit), then reused by the streams that follow, so a stream costs no allocation of
//! its own here and an idle connection holds only as many slots as it ever used at
//! once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Wake, Waker};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use hyper::Response;

use super::recv::RecvShared;
use crate::l7::http2::finish::Finish;
use crate::l7::http2::forward::Body;

/// The streams ready to be polled, and the connection task's waker.
#[derive(Debug)]
pub struct Ready {
    bits: Box<[AtomicU64]>,
    pub task: AtomicWaker,
}

impl Ready {
    pub fn new(slots: usize) -> Arc<Ready> {
        Arc::new(Ready {
            bits: (0..slots.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            task: AtomicWaker::new(),
        })
    }

    /// Marks `slot` ready and wakes the connection's task.
    pub fn mark(&self, slot: usize) {
        self.bits[slot / 64].fetch_or(1 << (slot % 64), Ordering::AcqRel);
        self.task.wake();
    }

    /// Marks `slot` ready without waking the task (it is the one running).
    pub fn mark_here(&self, slot: usize) {
        self.bits[slot / 64].fetch_or(1 << (slot % 64), Ordering::AcqRel);
    }

    /// How many words of 64 slots the bitmap has.
    pub fn words(&self) -> usize {
        self.bits.len()
    }

    /// The slots of `word` marked since the last call, cleared.
    pub fn take(&self, word: usize) -> u64 {
        if self.bits[word].load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.bits[word].swap(0, Ordering::AcqRel)
    }
}

/// A slot's waker: marks the slot.
struct SlotWaker {
    slot: usize,
    ready: Arc<Ready>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.ready.mark(self.slot);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.mark(self.slot);
    }
}

/// What a stream is doing on Fulcrum's side.
pub enum Phase {
    /// The request runs through the pipeline.
    Handling(Pin<Box<dyn Future<Output = (Response<Body>, Finish)> + Send>>),
    /// The response body is being sent: `pending` is the part of the last frame not
    /// sent yet (flow control, or the frame size).
    Sending { body: Body, pending: Bytes },
    /// Fulcrum's side has ended (the response sent, or the stream reset).
    Done,
}

/// One open stream.
pub struct Stream {
    pub id: u32,
    pub phase: Phase,
    /// How much Fulcrum may still send on the stream (may go below zero when the client
    /// lowers SETTINGS_INITIAL_WINDOW_SIZE).
    pub send_window: i64,
    /// How much the client may still send before Fulcrum's next WINDOW_UPDATE.
    pub recv_window: i64,
    /// Bytes of the request body read (or thrown away) and not yet given back.
    pub credit: i64,
    /// The request body's state, shared with the body the pipeline reads.
    pub recv: Option<Arc<RecvShared>>,
    /// The client has ended its side (END_STREAM).
    pub remote_done: bool,
    /// A HEAD request: the response has no body.
    pub head_only: bool,
    /// Fulcrum reset the stream (its response body broke off).
    pub reset_sent: bool,
    /// The request's access log line, written when the stream goes (dropped with it).
    pub finish: Option<Box<Finish>>,
    /// Sweeps for stalls since the response last moved ([`super::stall`]).
    pub quiet: u8,
}

/// The slots of a connection's streams.
pub struct Slots {
    streams: Vec<Option<Stream>>,
    wakers: Vec<Waker>,
    free: Vec<usize>,
    max: usize,
    ready: Arc<Ready>,
    /// `(stream id, slot)` of the open streams.
    open: Vec<(u32, usize)>,
}

impl Slots {
    pub fn new(n: usize, ready: &Arc<Ready>) -> Slots {
        Slots {
            streams: Vec::new(),
            wakers: Vec::new(),
            free: Vec::new(),
            max: n,
            ready: Arc::clone(ready),
            open: Vec::new(),
        }
    }

    /// How many streams are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Opens a stream in a free slot; `None` when all are taken.
    #[cfg(test)]
    pub fn insert(&mut self, stream: Stream) -> Option<usize> {
        self.insert_with(|_| stream)
    }

    /// Opens the stream `make` makes for a free slot (given its number).
    pub fn insert_with(&mut self, make: impl FnOnce(usize) -> Stream) -> Option<usize> {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None if self.streams.len() < self.max => {
                let slot = self.streams.len();
                self.streams.push(None);
                self.wakers.push(Waker::from(Arc::new(SlotWaker {
                    slot,
                    ready: Arc::clone(&self.ready),
                })));
                slot
            }
            None => return None,
        };
        let stream = make(slot);
        self.open.push((stream.id, slot));
        self.streams[slot] = Some(stream);
        Some(slot)
    }

    /// The slot of stream `id`, if open.
    pub fn find(&self, id: u32) -> Option<usize> {
        self.open.iter().find(|(i, _)| *i == id).map(|&(_, s)| s)
    }

    pub fn get_mut(&mut self, slot: usize) -> Option<&mut Stream> {
        self.streams.get_mut(slot)?.as_mut()
    }

    /// A slot's stream and its waker.
    pub fn with_waker(&mut self, slot: usize) -> Option<(&mut Stream, &Waker)> {
        let stream = self.streams.get_mut(slot)?.as_mut()?;
        Some((stream, &self.wakers[slot]))
    }

    #[cfg(test)]
    pub fn waker(&self, slot: usize) -> &Waker {
        &self.wakers[slot]
    }

    /// Closes the stream in `slot`.
    pub fn remove(&mut self, slot: usize) -> Option<Stream> {
        let stream = self.streams[slot].take()?;
        self.open.retain(|&(_, s)| s != slot);
        self.free.push(slot);
        Some(stream)
    }

    /// The slots of the open streams.
    pub fn open_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.open.iter().map(|&(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(id: u32) -> Stream {
        Stream {
            id,
            phase: Phase::Done,
            send_window: 0,
            recv_window: 0,
            credit: 0,
            recv: None,
            remote_done: false,
            head_only: false,
            reset_sent: false,
            finish: None,
            quiet: 0,
        }
    }

    #[test]
    fn slots_are_reused_and_wakers_mark_them() {
        let ready = Ready::new(3);
        let mut slots = Slots::new(3, &ready);
        let a = slots.insert(stream(1)).unwrap();
        let b = slots.insert(stream(3)).unwrap();
        let c = slots.insert(stream(5)).unwrap();
        assert!(slots.insert(stream(7)).is_none());
        assert_eq!(slots.find(3), Some(b));
        slots.remove(b);
        assert_eq!(slots.find(3), None);
        assert_eq!(slots.insert(stream(9)), Some(b));
        slots.waker(c).wake_by_ref();
        slots.waker(a).wake_by_ref();
        assert_eq!(ready.take(0), (1 << a) | (1 << c));
        assert_eq!(ready.take(0), 0);
        assert_eq!(slots.len(), 3);
    }
}
