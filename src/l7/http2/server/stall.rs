//! Responses that stopped moving, bounded by `timeouts.idle` as on the HTTP/1.1 engine:
//! a response body that sends nothing for `idle` (its backend went quiet, or the client
//! gives no window) has its stream reset (RST_STREAM CANCEL; the backend connection it
//! was read from is closed), and a connection whose client reads nothing of what waits
//! to be written for `idle` is closed. Other streams of the connection go on.
//!
//! The connection's task sweeps every half `idle`, on a clock of its own; a stream (or
//! the connection) counts as stalled after [`QUIET_SWEEPS`] sweeps without progress, so
//! after between one and one and a half `idle`. Progress costs the hot path one store
//! per DATA frame. A request still waiting for its response head is the request
//! timeout's, and a request body's stall is the pipeline's (408, as on the engine).

use super::Connection;
use super::streams::Phase;
use crate::l7::http2::frame::{self, Reason};

/// Sweeps without progress after which a response (or a connection) is stalled.
const QUIET_SWEEPS: u8 = 3;

impl<S> Connection<S> {
    /// One sweep: resets the stalled responses; whether the connection itself is stalled
    /// (output waiting, none of it written since [`QUIET_SWEEPS`] sweeps).
    pub(super) fn sweep_stalled(&mut self) -> bool {
        let open: Vec<usize> = self.streams.open_slots().collect();
        for slot in open {
            let Some(stream) = self.streams.get_mut(slot) else {
                continue;
            };
            if !matches!(stream.phase, Phase::Sending { .. }) {
                stream.quiet = 0;
                continue;
            }
            stream.quiet += 1;
            if stream.quiet >= QUIET_SWEEPS {
                let id = stream.id;
                tracing::debug!(client = %self.peer.addr, stream = id, "HTTP/2 response stalled: stream reset");
                frame::write_rst(id, Reason::CANCEL, &mut self.out.buf);
                self.close(slot, true);
            }
        }
        if self.out.pending() > 0 && self.out.written == self.written_seen {
            self.write_quiet += 1;
        } else {
            self.write_quiet = 0;
        }
        self.written_seen = self.out.written;
        self.write_quiet >= QUIET_SWEEPS
    }
}
