//! What the client sends: the preface, then frame after frame, each checked against the
//! connection's state (RFC 9113 5.1 and 6) and acted upon. HEADERS (with their
//! CONTINUATION frames) open streams and start their requests in the pipeline, DATA
//! feeds request bodies, and the control frames are answered.

use std::sync::Arc;

use bytes::{Buf, BytesMut};

use super::head::{Refused, RequestHead};
use super::recv::{Broken, RecvBody, RecvShared};
use super::streams::{Phase, Stream};
use super::{Connection, STREAM_WINDOW};
use crate::l7::http2::PREFACE;
use crate::l7::http2::forward::{self, ClientBody};
use crate::l7::http2::frame::{self, Fault, HEADER_LEN, Head, Reason, flag, kind};

/// A header block still missing its CONTINUATION frames.
pub struct Partial {
    stream: u32,
    end_stream: bool,
    /// A stream error found in the HEADERS frame (its priority), reported once the
    /// block has been decoded.
    fault: Option<Fault>,
    block: Vec<u8>,
}

/// The most a header block may take, in frames, before it is a flood.
const MAX_BLOCK_FACTOR: usize = 4;

impl<S> Connection<S> {
    /// Acts on every whole frame read so far.
    pub(super) fn process(&mut self) {
        while !self.fatal {
            if !self.preface {
                let n = self.rbuf.len().min(PREFACE.len());
                if self.rbuf[..n] != PREFACE[..n] {
                    return self.fail(Reason::PROTOCOL_ERROR, "bad preface");
                }
                if n < PREFACE.len() {
                    return;
                }
                self.rbuf.advance(PREFACE.len());
                self.preface = true;
            }
            if self.rbuf.len() < HEADER_LEN {
                return;
            }
            let head = Head::parse(self.rbuf[..HEADER_LEN].try_into().expect("9 bytes"));
            if head.len > frame::DEFAULT_MAX_FRAME {
                return self.fail(
                    Reason::FRAME_SIZE_ERROR,
                    "frame over SETTINGS_MAX_FRAME_SIZE",
                );
            }
            let total = HEADER_LEN + head.len as usize;
            if self.rbuf.len() < total {
                self.rbuf.reserve(total - self.rbuf.len());
                return;
            }
            let mut payload = self.rbuf.split_to(total);
            payload.advance(HEADER_LEN);
            if let Err(fault) = self.frame(head, payload) {
                match fault {
                    Fault::Connection(reason, why) => self.fail(reason, why),
                    Fault::Stream(reason, why) => self.reset(head.stream, reason, why),
                }
            }
        }
    }

    fn frame(&mut self, head: Head, payload: BytesMut) -> Result<(), Fault> {
        if !self.settings_seen {
            if head.kind != kind::SETTINGS || head.has(flag::ACK) {
                return Err(conn(
                    Reason::PROTOCOL_ERROR,
                    "the first frame is not SETTINGS",
                ));
            }
            self.settings_seen = true;
        }
        if self.continuation.is_some() && head.kind != kind::CONTINUATION {
            return Err(conn(
                Reason::PROTOCOL_ERROR,
                "a header block was interrupted",
            ));
        }
        match head.kind {
            kind::DATA => self.data(head, payload),
            kind::HEADERS => self.headers(head, &payload),
            kind::CONTINUATION => self.continuation(head, &payload),
            kind::PRIORITY => {
                if head.stream == 0 {
                    return Err(conn(Reason::PROTOCOL_ERROR, "PRIORITY on stream 0"));
                }
                if payload.len() != 5 {
                    return Err(Fault::Stream(
                        Reason::FRAME_SIZE_ERROR,
                        "PRIORITY not 5 bytes",
                    ));
                }
                frame::check_priority(head.stream, &payload)
            }
            kind::RST_STREAM => self.rst_stream(head, &payload),
            kind::SETTINGS => self.settings(head, &payload),
            kind::PING => {
                if head.stream != 0 {
                    return Err(conn(Reason::PROTOCOL_ERROR, "PING on a stream"));
                }
                if payload.len() != 8 {
                    return Err(conn(Reason::FRAME_SIZE_ERROR, "PING not 8 bytes"));
                }
                if !head.has(flag::ACK) {
                    self.spend()?;
                    frame::write_ping_ack(
                        payload[..].try_into().expect("8 bytes"),
                        &mut self.out.buf,
                    );
                }
                Ok(())
            }
            kind::GOAWAY => {
                if head.stream != 0 {
                    return Err(conn(Reason::PROTOCOL_ERROR, "GOAWAY on a stream"));
                }
                // The client leaves: the streams in progress finish, then the
                // connection closes.
                self.go_away(Reason::NO_ERROR);
                Ok(())
            }
            kind::WINDOW_UPDATE => self.window_update(head, &payload),
            kind::PUSH_PROMISE => Err(conn(Reason::PROTOCOL_ERROR, "PUSH_PROMISE from a client")),
            // Unknown frame types are ignored (RFC 9113 4.1).
            _ => Ok(()),
        }
    }

    /// A control frame, reset or empty frame: one token of the client's budget.
    fn spend(&mut self) -> Result<(), Fault> {
        self.budget
            .spend()
            .map_err(|_| conn(Reason::ENHANCE_YOUR_CALM, "flood of control frames"))
    }

    /// Whether stream `id` (not 0) is idle: above the last one the client opened, or
    /// even (Fulcrum opens no stream of its own).
    fn idle(&self, id: u32) -> bool {
        id > self.last_stream || id.is_multiple_of(2)
    }

    /// Whether `id` was closed lately, and whether Fulcrum reset it.
    fn closed_lately(&self, id: u32) -> Option<bool> {
        self.closed
            .iter()
            .find(|(i, _)| *i == id)
            .map(|&(_, reset)| reset)
    }

    fn data(&mut self, head: Head, payload: BytesMut) -> Result<(), Fault> {
        if head.stream == 0 {
            return Err(conn(Reason::PROTOCOL_ERROR, "DATA on stream 0"));
        }
        let len = payload.len();
        self.conn_recv -= len as i64;
        if self.conn_recv < 0 {
            return Err(conn(
                Reason::FLOW_CONTROL_ERROR,
                "DATA over the connection window",
            ));
        }
        let data_len = frame::unpad(&head, &payload)?.len();
        let padding = len - data_len;
        let end = head.has(flag::END_STREAM);
        if data_len == 0 && !end {
            self.spend()?;
        }
        let Some(slot) = self.streams.find(head.stream) else {
            // Not open: its bytes are given back at once.
            self.conn_read += len;
            return match self.closed_lately(head.stream) {
                _ if self.idle(head.stream) => {
                    Err(conn(Reason::PROTOCOL_ERROR, "DATA on an idle stream"))
                }
                Some(true) => Ok(()),
                _ => Err(Fault::Stream(
                    Reason::STREAM_CLOSED,
                    "DATA on a closed stream",
                )),
            };
        };
        let stream = self.streams.get_mut(slot).expect("found");
        if stream.remote_done {
            self.conn_read += len;
            return Err(Fault::Stream(
                Reason::STREAM_CLOSED,
                "DATA after END_STREAM",
            ));
        }
        stream.recv_window -= len as i64;
        if stream.recv_window < 0 {
            self.conn_read += len;
            return Err(Fault::Stream(
                Reason::FLOW_CONTROL_ERROR,
                "DATA over the stream window",
            ));
        }
        // Padding is given back at once; the data once it is read.
        self.conn_read += padding;
        stream.credit += padding as i64;
        let Some(recv) = stream.recv.clone() else {
            return Err(Fault::Stream(
                Reason::STREAM_CLOSED,
                "DATA after END_STREAM",
            ));
        };
        if data_len > 0 || end {
            let offset = usize::from(head.has(flag::PADDED));
            let bytes = payload.freeze().slice(offset..offset + data_len);
            if !recv.push(bytes, end) {
                self.ready.mark_here(slot);
            }
        }
        if end {
            stream.remote_done = true;
            if let Err(e) = recv.check_length() {
                recv.break_off(e);
                return Err(Fault::Stream(
                    Reason::PROTOCOL_ERROR,
                    "body length differs from content-length",
                ));
            }
            if matches!(stream.phase, Phase::Done) {
                self.close(slot, false);
            }
        } else if recv.over_length() {
            recv.break_off(Broken::Length);
            return Err(Fault::Stream(
                Reason::PROTOCOL_ERROR,
                "body longer than content-length",
            ));
        }
        Ok(())
    }

    fn headers(&mut self, head: Head, payload: &[u8]) -> Result<(), Fault> {
        if head.stream == 0 {
            return Err(conn(Reason::PROTOCOL_ERROR, "HEADERS on stream 0"));
        }
        let (body, fault) = frame::headers_fragment(&head, payload)?;
        if body.is_empty() && !head.has(flag::END_HEADERS) {
            self.spend()?;
        }
        let partial = Partial {
            stream: head.stream,
            end_stream: head.has(flag::END_STREAM),
            fault,
            block: body.to_vec(),
        };
        if head.has(flag::END_HEADERS) {
            return self.header_block(partial);
        }
        self.continuation = Some(partial);
        Ok(())
    }

    fn continuation(&mut self, head: Head, payload: &[u8]) -> Result<(), Fault> {
        let Some(mut partial) = self.continuation.take() else {
            return Err(conn(Reason::PROTOCOL_ERROR, "CONTINUATION without HEADERS"));
        };
        if partial.stream != head.stream {
            return Err(conn(
                Reason::PROTOCOL_ERROR,
                "CONTINUATION on another stream",
            ));
        }
        if payload.is_empty() && !head.has(flag::END_HEADERS) {
            self.spend()?;
        }
        partial.block.extend_from_slice(payload);
        if partial.block.len()
            > self
                .limits
                .max_header_size
                .max(frame::DEFAULT_MAX_FRAME as usize)
                * MAX_BLOCK_FACTOR
        {
            return Err(conn(Reason::ENHANCE_YOUR_CALM, "header block too large"));
        }
        if head.has(flag::END_HEADERS) {
            return self.header_block(partial);
        }
        self.continuation = Some(partial);
        Ok(())
    }

    /// A whole header block: a new stream's request, or a stream's trailers.
    fn header_block(&mut self, p: Partial) -> Result<(), Fault> {
        let id = p.stream;
        if let Some(slot) = self.streams.find(id) {
            // Trailers.
            let mut fields =
                RequestHead::trailers(self.limits.max_header_size, self.limits.max_headers);
            self.decode(&p.block, &mut fields)?;
            let stream = self.streams.get_mut(slot).expect("found");
            if stream.remote_done {
                return Err(Fault::Stream(
                    Reason::STREAM_CLOSED,
                    "HEADERS after END_STREAM",
                ));
            }
            if !p.end_stream {
                return Err(Fault::Stream(
                    Reason::PROTOCOL_ERROR,
                    "trailers without END_STREAM",
                ));
            }
            stream.remote_done = true;
            let recv = stream.recv.clone();
            let trailers = fields.into_trailers();
            match (recv, trailers) {
                (Some(recv), Ok(t)) => {
                    if let Err(e) = recv.check_length() {
                        recv.break_off(e);
                        return Err(Fault::Stream(
                            Reason::PROTOCOL_ERROR,
                            "body length differs from content-length",
                        ));
                    }
                    recv.trailers(t)
                }
                (_, Err(_)) => {
                    return Err(Fault::Stream(Reason::PROTOCOL_ERROR, "malformed trailers"));
                }
                (None, Ok(_)) => {}
            }
            if let Some(s) = self.streams.get_mut(slot)
                && matches!(s.phase, Phase::Done)
            {
                self.close(slot, false);
            }
            return Ok(());
        }
        if id.is_multiple_of(2) {
            return Err(conn(
                Reason::PROTOCOL_ERROR,
                "a client stream with an even number",
            ));
        }
        if id <= self.last_stream {
            return Err(match self.closed_lately(id) {
                Some(_) => conn(Reason::STREAM_CLOSED, "HEADERS on a closed stream"),
                None => conn(Reason::PROTOCOL_ERROR, "stream numbers must increase"),
            });
        }
        self.last_stream = id;
        let mut fields = RequestHead::new(self.limits.max_header_size, self.limits.max_headers);
        self.decode(&p.block, &mut fields)?;
        if let Some(fault) = p.fault {
            return Err(fault);
        }
        if self.going_away {
            // After GOAWAY, streams the client opens are not served.
            return Err(Fault::Stream(
                Reason::REFUSED_STREAM,
                "the connection is going away",
            ));
        }
        let length = fields.length();
        let expects_continue = fields.expects_continue();
        let req = match fields.request() {
            Ok(req) => req,
            Err(Refused::Malformed(why)) => return Err(Fault::Stream(Reason::PROTOCOL_ERROR, why)),
            Err(Refused::TooLarge) => {
                let h = hyper::HeaderMap::new();
                super::head::write_head(
                    Some(431),
                    &h,
                    Some(0),
                    (id, true, self.out.max_frame),
                    &mut self.out.buf,
                );
                if !p.end_stream {
                    frame::write_rst(id, Reason::NO_ERROR, &mut self.out.buf);
                }
                self.remember_closed(id, true);
                return Ok(());
            }
        };
        if self.streams.len() >= self.limits.max_streams {
            return Err(Fault::Stream(
                Reason::REFUSED_STREAM,
                "too many concurrent streams",
            ));
        }
        let head_only = req.method() == hyper::Method::HEAD;
        let mut stream = Stream {
            id,
            phase: Phase::Done,
            send_window: i64::from(self.settings.initial_window),
            recv_window: i64::from(STREAM_WINDOW),
            credit: 0,
            recv: None,
            remote_done: p.end_stream,
            head_only,
            reset_sent: false,
            finish: None,
            quiet: 0,
        };
        let Some(slot) = self.streams.insert_with(|slot| {
            let body = if p.end_stream {
                ClientBody::Empty
            } else {
                let shared =
                    RecvShared::new(slot, Arc::clone(&self.ready), length, expects_continue);
                stream.recv = Some(Arc::clone(&shared));
                ClientBody::Own(RecvBody::new(shared, length))
            };
            let req = req.map(|()| body);
            // Errors are responses already.
            stream.phase = Phase::Handling(Box::pin(forward::respond(
                req,
                self.peer.addr,
                self.peer.tls.clone(),
                Arc::clone(&self.peer.live),
                Arc::clone(&self.peer.frontend),
                Arc::clone(&self.activity),
            )));
            stream
        }) else {
            return Err(Fault::Stream(
                Reason::REFUSED_STREAM,
                "too many concurrent streams",
            ));
        };
        self.ready.mark_here(slot);
        Ok(())
    }

    fn decode(&mut self, block: &[u8], fields: &mut RequestHead) -> Result<(), Fault> {
        self.decoder
            .decode(block, |f| fields.field(f))
            .map_err(|e| conn(Reason::COMPRESSION_ERROR, e.0))
    }

    fn rst_stream(&mut self, head: Head, payload: &[u8]) -> Result<(), Fault> {
        if head.stream == 0 {
            return Err(conn(Reason::PROTOCOL_ERROR, "RST_STREAM on stream 0"));
        }
        if payload.len() != 4 {
            return Err(conn(Reason::FRAME_SIZE_ERROR, "RST_STREAM not 4 bytes"));
        }
        if self.idle(head.stream) {
            return Err(conn(Reason::PROTOCOL_ERROR, "RST_STREAM on an idle stream"));
        }
        if let Some(slot) = self.streams.find(head.stream) {
            self.spend()?;
            if let Some(recv) = self.streams.get_mut(slot).and_then(|s| s.recv.clone()) {
                recv.break_off(Broken::Reset);
            }
            // The stream's request stops where it is (its future is dropped).
            self.close(slot, false);
        }
        Ok(())
    }

    fn settings(&mut self, head: Head, payload: &[u8]) -> Result<(), Fault> {
        if head.stream != 0 {
            return Err(conn(Reason::PROTOCOL_ERROR, "SETTINGS on a stream"));
        }
        if head.has(flag::ACK) {
            if !payload.is_empty() {
                return Err(conn(
                    Reason::FRAME_SIZE_ERROR,
                    "SETTINGS ACK with a payload",
                ));
            }
            return Ok(());
        }
        self.spend()?;
        let before = self.settings.initial_window;
        frame::read_settings(payload, &mut self.settings)?;
        let delta = i64::from(self.settings.initial_window) - i64::from(before);
        if delta != 0 {
            let slots: Vec<usize> = self.streams.open_slots().collect();
            for slot in slots {
                let s = self.streams.get_mut(slot).expect("open");
                s.send_window += delta;
                if s.send_window > i64::from(frame::MAX_WINDOW) {
                    return Err(conn(
                        Reason::FLOW_CONTROL_ERROR,
                        "a stream window over 2^31-1",
                    ));
                }
                self.ready.mark_here(slot);
            }
        }
        self.out.max_frame = self.settings.max_frame as usize;
        frame::write_settings_ack(&mut self.out.buf);
        Ok(())
    }

    fn window_update(&mut self, head: Head, payload: &[u8]) -> Result<(), Fault> {
        // An idle stream first: a stream error (a zero increment) would reset it, and
        // RST_STREAM must not name an idle stream.
        if head.stream != 0 && self.idle(head.stream) {
            return Err(conn(
                Reason::PROTOCOL_ERROR,
                "WINDOW_UPDATE on an idle stream",
            ));
        }
        let inc = i64::from(frame::window_increment(&head, payload)?);
        if head.stream == 0 {
            self.out.conn_send += inc;
            if self.out.conn_send > i64::from(frame::MAX_WINDOW) {
                return Err(conn(
                    Reason::FLOW_CONTROL_ERROR,
                    "the connection window over 2^31-1",
                ));
            }
            let slots: Vec<usize> = self.streams.open_slots().collect();
            for slot in slots {
                self.ready.mark_here(slot);
            }
            return Ok(());
        }
        if let Some(slot) = self.streams.find(head.stream) {
            let s = self.streams.get_mut(slot).expect("found");
            s.send_window += inc;
            if s.send_window > i64::from(frame::MAX_WINDOW) {
                return Err(Fault::Stream(
                    Reason::FLOW_CONTROL_ERROR,
                    "a stream window over 2^31-1",
                ));
            }
            self.ready.mark_here(slot);
        }
        Ok(())
    }

    /// A stream error: RST_STREAM, and the stream (if open) closes.
    fn reset(&mut self, id: u32, reason: Reason, why: &str) {
        tracing::debug!(client = %self.peer.addr, stream = id, reason = reason.0, why, "HTTP/2 stream error");
        frame::write_rst(id, reason, &mut self.out.buf);
        if self.spend().is_err() {
            return self.fail(Reason::ENHANCE_YOUR_CALM, "too many stream errors");
        }
        match self.streams.find(id) {
            Some(slot) => self.close(slot, true),
            None => self.remember_closed(id, true),
        }
    }

    pub(super) fn remember_closed(&mut self, id: u32, reset: bool) {
        self.closed[self.closed_at] = (id, reset);
        self.closed_at = (self.closed_at + 1) % self.closed.len();
    }
}

fn conn(reason: Reason, why: &'static str) -> Fault {
    Fault::Connection(reason, why)
}
