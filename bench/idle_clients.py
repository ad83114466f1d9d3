#!/usr/bin/env python3
"""bench/idle_clients.py: hold many client connections open to a proxy on 127.0.0.1.

Used by bench/compare (scenario "idle") to measure how much memory a proxy spends per
client connection that does nothing. Standard library only.

    idle_clients.py PORT N MODE HOLD [CONCURRENCY] [CONNECT_LIMIT]

  MODE idle  each connection sends one complete "GET /small HTTP/1.1", reads the whole
             200 response, then stays open (keep-alive) without sending anything more.
  MODE h2    HTTP/2 with prior knowledge: the preface, SETTINGS and one GET / on stream
             1; once that stream has ended (END_STREAM), the connection stays open.
  MODE slow  slowloris: each connection sends only the start of a request head,
             "GET /small HTTP/1.1\\r\\nHost: x\\r\\n", and nothing more.
  HOLD       seconds to keep the connections open once all N are set up; then every
             connection is reset (SO_LINGER 0, so no TIME_WAIT is left) and it exits.
  CONCURRENCY  connections being set up at once (default 50)
  CONNECT_LIMIT  seconds allowed for setting up all N (default 60); after that it goes
             on with those it has.

The run time is bounded: CONNECT_LIMIT + HOLD seconds at most. It only ever connects
to 127.0.0.1. Output, one event per line, times in seconds since the epoch:
  START <t>                         before the first connect
  READY <t> open=<k> failed=<f>     all N set up (k open, f failed)
  FAIL <t> <reason>                 a connection that could not be set up (first 20)
  CLOSED <t> <eof|error=E> <line>   the proxy closed (or reset) a connection that was
                                    set up; <line> = first line it sent before, or -
  DONE <t> open=<k> closed=<c> failed=<f>
Exit status 0 unless the arguments are bad.
"""

import errno
import os
import resource
import selectors
import socket
import struct
import sys
import time

HOST = "127.0.0.1"
IDLE_REQ = b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
SLOW_REQ = b"GET /small HTTP/1.1\r\nHost: x\r\n"
# HPACK: :method GET, :scheme http, :path /small (literal), :authority 127.0.0.1.
_H2_BLOCK = b"\x82\x86\x04\x06/small\x41\x09127.0.0.1"
H2_REQ = (
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    + struct.pack(">I", len(_H2_BLOCK))[1:]
    + b"\x01\x05\x00\x00\x00\x01"
    + _H2_BLOCK
)


def out(*words):
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()


def now():
    return "%.6f" % time.time()


class Conn:
    __slots__ = ("sock", "state", "buf", "need")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connecting"  # -> sending -> reading (idle mode) -> open
        self.buf = b""
        self.need = -1  # total bytes of the response once its head is parsed


def h2_stream_ended(c):
    """True once a frame ending stream 1 (DATA or HEADERS with END_STREAM) is in c.buf."""
    at = 0
    while len(c.buf) - at >= 9:
        length = struct.unpack(">I", b"\x00" + c.buf[at:at + 3])[0]
        kind, flags = c.buf[at + 3], c.buf[at + 4]
        stream = struct.unpack(">I", c.buf[at + 5:at + 9])[0] & 0x7FFFFFFF
        if len(c.buf) - at < 9 + length:
            return False
        if stream == 1 and kind in (0, 1) and flags & 1:
            return True
        at += 9 + length
    return False


def response_complete(c, h2=False):
    """True once the whole response (head + Content-Length body) is in c.buf."""
    if h2:
        return h2_stream_ended(c)
    if c.need < 0:
        end = c.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        length = 0
        for line in c.buf[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        c.need = end + 4 + length
    return len(c.buf) >= c.need


def main():
    if len(sys.argv) < 5 or sys.argv[3] not in ("idle", "slow", "h2"):
        sys.stderr.write(__doc__)
        return 2
    port, n, mode, hold = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    conc = int(sys.argv[5]) if len(sys.argv) > 5 else 50
    limit = float(sys.argv[6]) if len(sys.argv) > 6 else 60.0
    if not (0 < port < 65536 and n > 0 and hold >= 0 and conc > 0 and limit > 0):
        sys.stderr.write(__doc__)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 64), hard))
        except (ValueError, OSError):
            pass

    sel = selectors.DefaultSelector()
    request = {"idle": IDLE_REQ, "slow": SLOW_REQ, "h2": H2_REQ}[mode]
    opened = []  # connections fully set up and still open
    closed = 0
    failed = 0
    fails_shown = 0
    started = 0
    in_setup = 0

    def fail(c, reason):
        nonlocal failed, fails_shown, in_setup
        failed += 1
        in_setup -= 1
        if fails_shown < 20:
            fails_shown += 1
            out("FAIL", now(), reason)
        sel.unregister(c.sock)
        c.sock.close()

    def established(c):
        nonlocal in_setup
        in_setup -= 1
        c.state = "open"
        c.buf = b""
        opened.append(c)
        sel.modify(c.sock, selectors.EVENT_READ, c)  # to notice the proxy closing it

    def setup_event(c, events):
        if c.state == "connecting":
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                return fail(c, "connect: " + os.strerror(err))
            c.state = "sending"
        if c.state == "sending":
            try:
                sent = c.sock.send(request)  # small enough to go in one send on loopback
            except OSError as e:
                return fail(c, "send: %s" % e)
            if sent != len(request):
                return fail(c, "short send")
            if mode == "slow":
                return established(c)
            c.state = "reading"
            sel.modify(c.sock, selectors.EVENT_READ, c)
            return
        if c.state == "reading":
            try:
                data = c.sock.recv(65536)
            except OSError as e:
                return fail(c, "recv: %s" % e)
            if not data:
                return fail(c, "closed before the whole response")
            c.buf += data
            if response_complete(c, mode == "h2"):
                if mode == "h2":
                    return established(c)
                if not c.buf.startswith(b"HTTP/1.1 200 "):
                    return fail(c, "status: %r" % c.buf.split(b"\r\n", 1)[0])
                return established(c)

    def open_event(c):
        nonlocal closed
        try:
            data = c.sock.recv(65536)
        except OSError as e:
            data, info = None, "error=%s" % (e.errno and errno.errorcode.get(e.errno, e.errno))
        else:
            info = "eof"
        if data:  # e.g. a 408 before the close; keep it for the report
            c.buf += data
            return
        closed += 1
        first = c.buf.split(b"\r\n", 1)[0].decode("latin-1").replace(" ", "_")
        out("CLOSED", now(), info, first or "-")
        sel.unregister(c.sock)
        c.sock.close()
        opened.remove(c)

    out("START", now())
    deadline = time.monotonic() + limit
    while (started < n or in_setup > 0) and time.monotonic() < deadline:
        while started < n and in_setup < conc:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            started += 1
            in_setup += 1
            c = Conn(s)
            rc = s.connect_ex((HOST, port))
            if rc not in (0, errno.EINPROGRESS):
                sel.register(s, selectors.EVENT_WRITE, c)
                fail(c, "connect: " + os.strerror(rc))
                continue
            sel.register(s, selectors.EVENT_WRITE, c)
        for key, events in sel.select(timeout=0.2):
            c = key.data
            if c.state == "open":
                open_event(c)
            else:
                setup_event(c, events)
    # Anything still being set up when the limit struck counts as failed.
    for key in list(sel.get_map().values()):
        c = key.data
        if c.state != "open":
            fail(c, "not set up within %gs (%s)" % (limit, c.state))
    out("READY", now(), "open=%d" % len(opened), "failed=%d" % failed)

    end = time.monotonic() + hold
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=max(0.0, min(0.5, end - time.monotonic()))):
            open_event(key.data)
    out("DONE", now(), "open=%d" % len(opened), "closed=%d" % closed, "failed=%d" % failed)
    linger = struct.pack("ii", 1, 0)
    for c in opened:
        try:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        except OSError:
            pass
        c.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
