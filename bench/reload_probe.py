#!/usr/bin/env python3
"""bench/reload_probe.py: keep-alive clients that count what a proxy reload costs them.

Used by bench/reload, alongside wrk, while a proxy reloads its configuration again and
again. Standard library only; it only ever connects to 127.0.0.1.

    reload_probe.py PORT [CONNS] [DURATION] [PATH] [THINK_MS] [TIMEOUT]

  CONNS     keep-alive connections, one thread each (default 20)
  DURATION  seconds to send requests for (default 12)
  PATH      request path (default /small)
  THINK_MS  pause between two requests on a connection, in ms (default 2), so that every
            connection is idle now and then, as real keep-alive clients are
  TIMEOUT   seconds to wait for a connect or a response before counting a timeout (default 5)

Each connection sends "GET PATH HTTP/1.1" in a loop, reads the whole response
(Content-Length, chunked, or up to EOF), and classifies everything that happens to it:

  requests         complete responses received (any status)
  ok / non200      responses with status 200 / any other status (by status in "statuses")
  backends         complete 200 responses by body (the backends answer "hello from
                   backend N"), so the config switches can be seen
  announced_close  responses that carried "Connection: close": the proxy closed the
                   connection the polite way; nothing was lost (the next request goes
                   on a new connection)
  closed_idle      the proxy closed the connection (EOF) while it was idle, between two
                   requests: seen before the next request was sent, nothing was lost,
                   but a client that did not look first would have sent a request into
                   a closing connection
  reset_idle       the same with a reset (ECONNRESET) instead of an EOF
  closed_mid       EOF after the request was sent and before the whole response came:
                   that request got no answer (truncated = part of a response came)
  reset_mid        ECONNRESET / EPIPE after the request was sent: no answer either
  timeouts         no response (or no connect) within TIMEOUT seconds
  connect_errors   a new connection could not be made (refused, reset, ...), by errno
  connects         connections opened in all (CONNS at the start + reconnections)

After any close, reset or timeout the connection is opened again. The run time is
bounded: the threads stop sending at DURATION seconds and the process exits at
DURATION + TIMEOUT + 2 seconds at the latest, whatever the proxy does.
Output: one JSON line with the counts above, plus "events": the first 50 closes,
resets, timeouts and errors as [seconds since start, kind, detail], and "started_at":
the start, in seconds since the epoch.
Exit status 0 unless the arguments are bad.
"""

import errno
import json
import select
import socket
import sys
import threading
import time

HOST = "127.0.0.1"
MAX_EVENTS = 50


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = {
            "requests": 0, "ok": 0, "non200": 0, "announced_close": 0,
            "closed_idle": 0, "reset_idle": 0, "closed_mid": 0, "reset_mid": 0,
            "truncated": 0, "timeouts": 0, "connect_errors": 0, "connects": 0,
            "unexpected_data": 0, "bad_responses": 0,
        }
        self.statuses = {}
        self.backends = {}
        self.connect_errnos = {}
        self.events = []
        self.t0 = time.monotonic()
        self.started_at = time.time()

    def add(self, key, n=1):
        with self.lock:
            self.c[key] += n

    def event(self, kind, detail=""):
        with self.lock:
            self.c[kind] += 1
            if len(self.events) < MAX_EVENTS:
                self.events.append([round(time.monotonic() - self.t0, 3), kind, detail])

    def response(self, status, body, announced):
        with self.lock:
            self.c["requests"] += 1
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
            if status == 200:
                self.c["ok"] += 1
                name = body.decode("latin-1").strip()
                if name.startswith("hello from "):
                    name = name[len("hello from "):]
                name = name[:40]
                self.backends[name] = self.backends.get(name, 0) + 1
            else:
                self.c["non200"] += 1
            if announced:
                self.c["announced_close"] += 1


class Closed(Exception):
    """The connection ended: kind is eof or reset, partial tells if a response had begun."""

    def __init__(self, kind, partial, detail):
        super().__init__(detail)
        self.kind, self.partial, self.detail = kind, partial, detail


def err_name(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if getattr(e, "errno", None) else type(e).__name__


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.got_any = False

    def fill(self):
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise
        except OSError as e:
            raise Closed("reset", self.got_any, err_name(e))
        if not data:
            raise Closed("eof", self.got_any, "EOF")
        self.got_any = True
        self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise ValueError("line too long")
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self):
        """Returns (status, body, server_closes)."""
        self.got_any = bool(self.buf)
        while True:
            status_line = self.line()
            parts = status_line.split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
                raise ValueError("bad status line %r" % status_line[:60])
            status = int(parts[1])
            headers = {}
            while True:
                h = self.line()
                if not h:
                    break
                k, _, v = h.partition(b":")
                headers[k.strip().lower()] = v.strip().lower() if k.strip().lower() != b"content-length" else v.strip()
            if 100 <= status < 200:
                continue  # interim response
            break
        conn_hdr = headers.get(b"connection", b"")
        closes = b"close" in conn_hdr or parts[0] == b"HTTP/1.0" and b"keep-alive" not in conn_hdr
        if b"chunked" in headers.get(b"transfer-encoding", b""):
            body = b""
            while True:
                size = int(self.line().split(b";")[0], 16)
                if size == 0:
                    while self.line():
                        pass
                    break
                body += self.exact(size)
                self.exact(2)
        elif b"content-length" in headers:
            body = self.exact(int(headers[b"content-length"]))
        else:
            while True:
                try:
                    self.fill()
                except Closed as c:
                    if c.kind == "eof":
                        break
                    raise
            body, self.buf = self.buf, b""
            closes = True
        return status, body, closes


def client(port, path, deadline, think, timeout, stats):
    request = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: reload-probe\r\n\r\n" % (path, port)).encode()
    conn = None
    while time.monotonic() < deadline:
        if conn is None:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(timeout)
            try:
                s.connect((HOST, port))
            except socket.timeout:
                s.close()
                stats.event("timeouts", "connect")
                continue
            except OSError as e:
                s.close()
                name = err_name(e)
                with stats.lock:
                    stats.connect_errnos[name] = stats.connect_errnos.get(name, 0) + 1
                stats.event("connect_errors", name)
                time.sleep(0.01)
                continue
            stats.add("connects")
            conn = Conn(s)
        else:
            # Idle: did the proxy close (or reset) this connection while we were not
            # looking? Checked before sending, so nothing is lost if it did.
            try:
                readable, _, _ = select.select([conn.sock], [], [], 0)
            except (OSError, ValueError):
                readable = [conn.sock]
            if readable:
                try:
                    data = conn.sock.recv(65536)
                    if data:
                        stats.event("unexpected_data", data[:60].decode("latin-1"))
                    else:
                        stats.event("closed_idle", "EOF")
                except socket.timeout:
                    stats.event("timeouts", "idle read")
                except OSError as e:
                    stats.event("reset_idle", err_name(e))
                conn.sock.close()
                conn = None
                continue
        try:
            conn.sock.sendall(request)
        except socket.timeout:
            stats.event("timeouts", "send")
            conn.sock.close()
            conn = None
            continue
        except OSError as e:
            stats.event("reset_mid", "send " + err_name(e))
            conn.sock.close()
            conn = None
            continue
        try:
            status, body, closes = conn.read_response()
        except socket.timeout:
            stats.event("timeouts", "response")
            conn.sock.close()
            conn = None
            continue
        except Closed as c:
            if c.kind == "eof":
                stats.event("truncated" if c.partial else "closed_mid", c.detail)
            else:
                stats.event("reset_mid", c.detail + (" (partial response)" if c.partial else ""))
            conn.sock.close()
            conn = None
            continue
        except (ValueError, IndexError) as e:
            stats.event("bad_responses", str(e)[:80])
            conn.sock.close()
            conn = None
            continue
        stats.response(status, body, closes)
        if closes:
            conn.sock.close()
            conn = None
        if think > 0:
            time.sleep(think)
    if conn is not None:
        conn.sock.close()


def main():
    a = sys.argv[1:]
    if not 1 <= len(a) <= 6:
        sys.stderr.write(__doc__)
        sys.exit(2)
    try:
        port = int(a[0])
        conns = int(a[1]) if len(a) > 1 else 20
        duration = float(a[2]) if len(a) > 2 else 12.0
        path = a[3] if len(a) > 3 else "/small"
        think = (float(a[4]) if len(a) > 4 else 2.0) / 1000.0
        timeout = float(a[5]) if len(a) > 5 else 5.0
    except ValueError:
        sys.stderr.write(__doc__)
        sys.exit(2)
    if not (0 < port < 65536 and 1 <= conns <= 1000 and 0 < duration <= 3600 and 0 < timeout <= 60
            and think >= 0 and path.startswith("/")):
        sys.stderr.write(__doc__)
        sys.exit(2)
    stats = Stats()
    deadline = stats.t0 + duration
    threads = []
    for _ in range(conns):
        t = threading.Thread(target=client, args=(port, path, deadline, think, timeout, stats), daemon=True)
        t.start()
        threads.append(t)
    hard_stop = deadline + timeout + 2
    for t in threads:
        t.join(max(0.0, hard_stop - time.monotonic()))
    elapsed = time.monotonic() - stats.t0
    with stats.lock:
        out = dict(stats.c)
        out["threads_still_running"] = sum(1 for t in threads if t.is_alive())
        out["seconds"] = round(elapsed, 3)
        out["started_at"] = round(stats.started_at, 6)
        out["conns"] = conns
        out["statuses"] = dict(stats.statuses)
        out["backends"] = dict(stats.backends)
        out["connect_errnos"] = dict(stats.connect_errnos)
        out["events"] = list(stats.events)
    sys.stdout.write(json.dumps(out, sort_keys=True) + "\n")
    sys.stdout.flush()
    # Threads stuck in a blocking call (bounded by TIMEOUT anyway) must not keep us.
    import os
    os._exit(0)


if __name__ == "__main__":
    main()
