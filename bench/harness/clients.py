"""The load generators (wrk, h2load) and what their output says.

A scenario (bench/scenarios.toml) names its client, connections, streams, path and
listener; `load_command` turns that into the same command line for every target, and
`parse` reads requests/s, p50, p99 and the errors back. wrk over TLS runs with a small
LD_PRELOAD shim (THE WRK SHIM in bench/tls): it sends SNI bench.test, drops the session
before each reconnect when the scenario wants full handshakes, and counts resumptions.
"""

import os
import re
import shlex
import subprocess

from machine import Fatal, read_text, sh

SNI = "bench.test"

SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
extern int SSL_set_session(SSL *s, SSL_SESSION *session);
extern int SSL_session_reused(const SSL *s);
extern int SSL_is_init_finished(const SSL *s);

#define SSL_CTRL_SET_TLSEXT_HOSTNAME 55

static unsigned long closed, resumed;
static int used;

/* wrk closes a connection with SSL_shutdown + SSL_clear and reuses the SSL
 * object, which keeps the session and offers it on the next handshake. */
int SSL_clear(SSL *s) {
    static int (*real)(SSL *);
    if (!real) real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
    used = 1;
    if (SSL_is_init_finished(s)) {
        __atomic_add_fetch(&closed, 1, __ATOMIC_RELAXED);
        if (SSL_session_reused(s)) __atomic_add_fetch(&resumed, 1, __ATOMIC_RELAXED);
    }
    const char *fresh = getenv("BENCH_TLS_FRESH");
    if (fresh && *fresh == '1') SSL_set_session(s, NULL);
    return real(s);
}

/* SSL_set_tlsext_host_name() is a macro for this call. */
long SSL_ctrl(SSL *s, int cmd, long larg, void *parg) {
    static long (*real)(SSL *, int, long, void *);
    if (!real) real = (long (*)(SSL *, int, long, void *))dlsym(RTLD_NEXT, "SSL_ctrl");
    if (cmd == SSL_CTRL_SET_TLSEXT_HOSTNAME && parg) {
        const char *sni = getenv("BENCH_TLS_SNI");
        if (sni && *sni) parg = (void *)sni;
    }
    return real(s, cmd, larg, parg);
}

__attribute__((destructor)) static void report(void) {
    const char *path = getenv("BENCH_TLS_STATS");
    if (!used || !path || !*path) return;
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f, "%lu %lu\n", closed, resumed);
    fclose(f);
}
"""


def build_shim(work):
    src, so = f"{work}/wrk-tls-shim.c", f"{work}/wrk-tls-shim.so"
    with open(src, "w") as f:
        f.write(SHIM_C)
    r = subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", so, src, "-ldl"], capture_output=True, text=True)
    if r.returncode != 0:
        raise Fatal("could not compile the wrk shim: " + r.stdout + r.stderr)
    return so


def load_command(sc, ports, seconds, logfile, shim=None):
    """(argv, env additions) of the client for scenario sc against a target's ports."""
    listener = sc.get("listener", "plain")
    port = ports.get(listener, ports.get("plain"))
    scheme = "https" if listener == "tls" else "http"
    c = str(sc["connections"])
    if sc["client"] == "wrk":
        argv = ["wrk", "-t1", f"-c{c}", f"-d{seconds}s", "--latency"]
        if sc.get("close"):
            argv += ["-H", "Connection: close"]
        argv.append(f"{scheme}://127.0.0.1:{port}{sc['path']}")
        env = {}
        if listener == "tls":
            fresh = "1" if sc.get("tls_session") == "fresh" else "0"
            env = {"LD_PRELOAD": shim, "BENCH_TLS_SNI": SNI, "BENCH_TLS_FRESH": fresh}
        return argv, env
    if sc["client"] == "h2load":
        argv = ["h2load", "-t1", f"-c{c}", f"-m{sc.get('streams', 1)}", "-D", str(seconds), f"--log-file={logfile}"]
        if listener == "tls":
            argv += [f"--connect-to=127.0.0.1:{port}", f"https://{SNI}:{port}{sc['path']}"]
        else:
            argv.append(f"http://127.0.0.1:{port}{sc['path']}")
        return argv, {}
    raise Fatal(f"scenario {sc['name']}: unknown client '{sc['client']}'")


def run_load(machine, sc, ports, seconds, out, shim=None):
    """Runs the client (pinned to the client CPU) with output in `out`, h2load's per-request
    log in out.log and the shim's counts in out.tls."""
    for f in (out + ".tls", out + ".log"):
        if os.path.exists(f):
            os.unlink(f)
    argv, env = load_command(sc, ports, seconds, out + ".log", shim)
    env = dict(os.environ, **env, BENCH_TLS_STATS=out + ".tls") if env else None
    with open(out, "wb") as f:
        try:
            subprocess.run(machine.client_pin + argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                           env=env, timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            pass


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _ms(v):
    m = re.match(r"^([0-9.]+)([a-z]+)$", v)
    return float(m.group(1)) * _UNITS[m.group(2)] if m and m.group(2) in _UNITS else -1.0


def parse_wrk(path):
    """(rps, p50_ms, p99_ms, errors) where errors is [(kind, count)]."""
    rps, p50, p99, errs, dist, got = 0.0, -1.0, -1.0, [], False, False
    for line in read_text(path).splitlines():
        v = line.split()
        if "Latency Distribution" in line:
            dist = True
        elif dist and v and v[0] == "50%":
            p50 = _ms(v[1])
        elif dist and v and v[0] == "99%":
            p99 = _ms(v[1])
        elif line.strip().startswith("Socket errors:"):
            v = line.replace(",", "").split()
            for i in range(2, len(v) - 1, 2):
                if int(v[i + 1]) > 0:
                    errs.append((v[i], int(v[i + 1])))
        elif "Non-2xx or 3xx responses:" in line:
            errs.append(("non2xx", int(v[-1])))
        elif line.startswith("Requests/sec:"):
            rps, got = float(v[1]), True
    if not got:
        errs.append(("wrk_failed", 1))
    return rps, p50, p99, errs


def parse_h2load(path, want_proto):
    """As parse_wrk. The percentiles come from the per-request log (path.log, third
    column: microseconds from sending the request to the end of the response)."""
    p50 = p99 = -1.0
    lat = []
    for line in read_text(path + ".log").splitlines():
        v = line.split("\t")
        if len(v) >= 3 and _num(v[1]) > 0:
            lat.append(float(v[2]))
    if lat:
        lat.sort()
        n = len(lat)
        p50 = lat[max(1, int(n * 0.50 + 0.5)) - 1] / 1000
        p99 = lat[min(n, max(1, int(n * 0.99 + 0.5))) - 1] / 1000
    rps, got, errs, bad, proto = 0.0, False, [], 0, ""
    for line in read_text(path).splitlines():
        v = line.replace(",", "").split()
        if line.startswith("finished in "):
            for i in range(len(v) - 1):
                if v[i + 1].startswith("req/s"):
                    rps, got = float(v[i]), True
        elif line.startswith("requests: "):
            for i in range(1, len(v) - 1):
                if v[i + 1] in ("failed", "errored", "timeout") and int(v[i]) > 0:
                    errs.append((v[i + 1], int(v[i])))
        elif line.startswith("status codes: "):
            for i in range(2, len(v) - 1):
                if re.match(r"^[45]xx$", v[i + 1]):
                    bad += int(v[i])
        elif line.startswith("Application protocol: "):
            proto = v[2]
    if bad:
        errs.append(("non2xx", bad))
    if not got:
        errs.append(("h2load_failed", 1))
    elif proto != want_proto:
        errs.append(("not_h2", 1))
    return rps, p50, p99, errs


def parse(sc, path):
    if sc["client"] == "h2load":
        return parse_h2load(path, "h2" if sc.get("listener") == "tls" else "h2c")
    return parse_wrk(path)


def h2load_tls_info(path):
    """What h2load negotiated (from its output), or ""."""
    p = c = k = a = ""
    for line in read_text(path).splitlines():
        v = line.split()
        if line.startswith("TLS Protocol: "):
            p = v[2]
        elif line.startswith("Cipher: "):
            c = v[1]
        elif line.startswith("Server Temp Key: ") and len(v) > 3:
            k = v[3]
        elif line.startswith("Application protocol: "):
            a = v[2]
    return f"{p} {c}, key exchange {k}, ALPN {a}" if p else ""


def h2load_why(path):
    """h2load does not reconnect: the lines that say why its clients stopped, if they did."""
    pat = re.compile(r"^(requests|status codes|Application protocol):|failure|error|GOAWAY|could not")
    counts = {}
    for line in read_text(path).splitlines():
        if pat.search(line):
            counts[line] = counts.get(line, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:4]
    return ";".join(f"{n} {line}" for line, n in top)


def describe(sc, seconds):
    """The client command line, for the log (ports as placeholders)."""
    argv, _ = load_command(sc, {"plain": "PORT", "tls": "PORT", "h2c": "PORT"}, seconds, "LOGFILE", "shim")
    return " ".join(shlex.quote(a) for a in argv)



def _num(s):
    try:
        return float(s)
    except ValueError:
        return 0.0


def version_line(cmd):
    return sh(cmd).splitlines()[0] if sh(cmd) else "?"
