"""What a target must do before it is measured, checked with real clients (curl, openssl
s_client): /small and /1m answer 200 with the right bodies, both backends are used (or,
with STATE, the client stays on one), and over TLS the handshake variants that wrk,
h2load and browsers use. Every function returns the problems found (empty: all is well).
"""

import hashlib
import os
import re
import time

from clients import SNI
from machine import sh


def wait_http(machine, url, pid=None, curl_args=(), tries=100):
    """Waits up to tries/10 s for a 200 (gives up early if pid exits)."""
    for _ in range(tries):
        if pid is not None and not machine.alive(pid):
            return False
        code = sh(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "1", *curl_args, url])
        if code == "200":
            return True
        time.sleep(0.1)
    return False


def fetch_small(desc, want_version, *curl_args):
    out = sh(["curl", "-s", "--max-time", "5", "-w", " %{http_code} %{http_version}", *curl_args])
    if not re.fullmatch(r"hello from backend [12]\n 200 " + re.escape(want_version), out):
        return [f"GET /small {desc} -> '{out.replace(chr(10), ' ')}' (want 'hello from backend N' 200, HTTP version {want_version})"]
    return []


def fetch_1m(h, desc, want, *curl_args):
    """want: "200 1048576" (+ " VERSION"); the body must be the file the backends serve."""
    path = f"{h.work}/check.1m"
    if os.path.exists(path):
        os.unlink(path)
    fmt = "%{http_code} %{size_download}" + (" %{http_version}" if want.count(" ") > 1 else "")
    out = sh(["curl", "-s", "--max-time", "10", "-o", path, "-w", fmt, *curl_args])
    if out != want:
        return [f"GET /1m {desc} -> '{out}' (want '{want}')"]
    with open(path, "rb") as f:
        got = hashlib.md5(f.read()).hexdigest()
    if got != h.md5_1m:
        return [f"GET /1m {desc}: body differs from the file served (md5 {got}, want {h.md5_1m})"]
    return []


def backends_seen(curl_args, n=6):
    seen = ""
    for _ in range(n):
        out = sh(["curl", "-s", "--max-time", "5", *curl_args])
        seen += out.strip().rsplit(" ", 1)[-1] if out.strip() else ""
    return seen


def check_plain(h, port, proxy):
    """bench/compare and bench/l4: /small, /1m and (through a proxy) the balancing."""
    url = f"http://127.0.0.1:{port}"
    out = sh(["curl", "-s", "--max-time", "5", "-w", " %{http_code}", f"{url}/small"])
    if not re.match(r"^hello from backend [12].* 200$", out, re.S):
        return [f"GET /small -> '{out.replace(chr(10), ' ')}'"]
    p = fetch_1m(h, "", "200 1048576", f"{url}/1m")
    if p:
        return p
    if proxy:
        seen = backends_seen([f"{url}/small"])
        what = "connections" if h.suite["mode"] == "tcp" else "requests"
        if h.opts.state:
            if seen not in ("111111", "222222"):
                return [f"the client was not kept on one backend ({','.join(seen)})"]
        elif "1" not in seen or "2" not in seen:
            return [f"only one backend answered 6 {what} ({','.join(seen)})"]
    return []


def s_client(port, *args, stdin=None):
    """One openssl s_client handshake (with stdin sent, if given); its output."""
    return sh(["timeout", "5", "openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args], timeout=10,
              input=stdin)


def _line(out, pattern):
    for line in out.splitlines():
        if re.search(pattern, line):
            return line
    return ""


def check_tls(h, ports):
    """bench/tls: over TLS (HTTP/1.1 and HTTP/2, certificate verified) and h2c, the
    balancing, and TLS 1.3 + ALPN, http/1.1-only ALPN, TLS 1.2."""
    tp, cp = ports["tls"], ports["h2c"]
    tls = ["--cacert", h.cert, "--resolve", f"{SNI}:{tp}:127.0.0.1"]
    base = f"https://{SNI}:{tp}"
    h2c = f"http://127.0.0.1:{cp}"
    p = []
    p += fetch_small("over TLS, HTTP/1.1", "1.1", *tls, "--http1.1", f"{base}/small")
    p += fetch_small("over TLS, HTTP/2 (ALPN)", "2", *tls, "--http2", f"{base}/small")
    p += fetch_small("over h2c (prior knowledge)", "2", "--http2-prior-knowledge", f"{h2c}/small")
    p += fetch_1m(h, "over TLS, HTTP/1.1", "200 1048576 1.1", *tls, "--http1.1", f"{base}/1m")
    p += fetch_1m(h, "over TLS, HTTP/2", "200 1048576 2", *tls, "--http2", f"{base}/1m")
    p += fetch_1m(h, "over h2c", "200 1048576 2", "--http2-prior-knowledge", f"{h2c}/1m")
    seen = backends_seen([*tls, "--http1.1", f"{base}/small"])
    if "1" not in seen or "2" not in seen:
        p.append(f"only one backend answered 6 TLS connections ({','.join(seen)})")
    out = s_client(tp, "-tls1_3", "-servername", SNI, "-alpn", "h2,http/1.1", "-CAfile", h.cert,
                   "-verify_hostname", SNI)
    if not re.search(r"^New, TLSv1\.3", out, re.M):
        p.append("TLS 1.3 handshake failed: " + " ".join(re.findall(r"(?im)^.*(?:error|alert).*$", out)[:2]))
    if not re.search(r"^ALPN protocol: h2$", out, re.M):
        p.append(f"ALPN h2,http/1.1 offered: the server did not pick h2 ({_line(out, '^(ALPN|No ALPN)')})")
    if not re.search(r"^Verify return code: 0 \(ok\)", out, re.M):
        p.append(f"certificate did not verify for {SNI} ({_line(out, '^Verify return code')})")
    out = s_client(tp, "-servername", SNI, "-alpn", "http/1.1")
    if not re.search(r"^ALPN protocol: http/1\.1$", out, re.M):
        p.append(f"ALPN http/1.1 offered: not picked ({_line(out, '^(ALPN|No ALPN)')})")
    out = s_client(tp, "-tls1_2", "-servername", SNI)
    if not re.search(r"^New, TLSv1\.2", out, re.M):
        p.append("TLS 1.2 handshake failed: " + " ".join(re.findall(r"(?im)^.*(?:error|alert).*$", out)[:2]))
    return p


def check_tls_after(h, ports):
    tp = ports["tls"]
    return fetch_small("over TLS after the run", "1.1", "--cacert", h.cert, "--resolve", f"{SNI}:{tp}:127.0.0.1",
                       "--http1.1", f"https://{SNI}:{tp}/small")


def tls_info(h, port):
    """What a TLS 1.3 client offering h2,http/1.1 (OpenSSL's defaults, like wrk)
    negotiates, whether a TLS 1.3 session resumes, and whether a client that sends no
    server name (or an IP address) gets a handshake."""
    out = s_client(port, "-servername", SNI, "-alpn", "h2,http/1.1", "-CAfile", h.cert)
    m = re.search(r"^New, ([^,]*), Cipher is (.*)$", out, re.M)
    proto, cipher = (m.group(1), m.group(2)) if m else ("?", "?")
    m = re.search(r"^Server Temp Key: ([^,]*)", out, re.M)
    kx = m.group(1) if m else "?"
    m = re.search(r"^ALPN protocol: (.*)$", out, re.M)
    alpn = m.group(1) if m else "none"
    # Resumption: a TLS 1.3 ticket is only read after the handshake, so make a request
    # (-ign_eof waits for the answer), keep the session, reconnect with it.
    req = b"GET /small HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\n\r\n"
    sess = f"{h.work}/sess.pem"
    common = ["-servername", SNI, "-alpn", "http/1.1", "-tls1_3", "-ign_eof"]
    s_client(port, *common, "-sess_out", sess, stdin=req)
    resumed = "no"
    if os.path.exists(sess) and os.path.getsize(sess) > 0:
        if re.search(r"^Reused, TLSv1\.3", s_client(port, *common, "-sess_in", sess, stdin=req), re.M):
            resumed = "yes"
        os.unlink(sess)
    nosni = "ok" if re.search(r"^New, TLSv1", s_client(port, "-noservername"), re.M) else "failed"
    ipsni = "ok" if re.search(r"^New, TLSv1", s_client(port, "-servername", "127.0.0.1"), re.M) else "failed"
    return (f"{proto} {cipher}, key exchange {kx}, ALPN {alpn}; resumes a TLS 1.3 session: {resumed}; "
            f"handshake without SNI: {nosni}, with an IP address as SNI (wrk without the shim): {ipsni}")
