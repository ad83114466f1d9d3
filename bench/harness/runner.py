"""One side-by-side benchmark: set up the backends, then for each scenario ROUNDS rounds in
which every target runs once (order rotated by one each round), each run on a FRESH
proxy that is checked, warmed up, measured and stopped.

A run is measured as the proxy's CPU time over the wall time, whole-core utilisation of
the proxy's and the client's cores, the CPU other processes took meanwhile (a disturbed
run is run again, RERUNS in all) and the proxy's peak RSS. The report is report.py's.
"""

import hashlib
import os
import subprocess
import time

import checks
import clients
from machine import Fatal, log, read_text, tail, vm_kb
from proxies import NO_PROXY, Proxies, nginx_backend_conf, nginx_e_args


class Options:
    """Environment settings of a run (see the header of bench/compare for each)."""

    def __init__(self, env, suite):
        def num(key, default, lo=None, hi=None):
            v = env.get(key, str(default))
            if not v.isdigit() or (lo is not None and int(v) < lo) or (hi is not None and int(v) > hi):
                rng = f" between {lo} and {hi}" if hi is not None else (f" >= {lo}" if lo is not None else "")
                raise Fatal(f"{key} must be a whole number{rng}")
            return int(v)

        self.duration = num("DURATION", suite.get("duration", 4), 1)
        self.rounds = num("ROUNDS", 3, 1)
        self.warmup = num("WARMUP", 1)
        self.pin = env.get("PIN", "1")
        self.proxy_cpu = num("PROXY_CPU", 0)
        self.client_cpu = num("CLIENT_CPU", 1)
        self.keep_tmp = env.get("KEEP_TMP", "0") == "1"
        self.bg_limit = num("BG_LIMIT", 10)
        self.steal_limit = num("STEAL_LIMIT", 5)
        self.idle_wait = num("IDLE_WAIT", 10)
        self.idle_wait_total = num("IDLE_WAIT_TOTAL", 120)
        self.reruns = num("RERUNS", 6)
        self.idle_conns = num("IDLE_CONNS", 5000, 1, 10000)
        self.slow_conns = num("SLOW_CONNS", 2000, 1, 10000)
        self.idle_settle = num("IDLE_SETTLE", 2, 1, 5)
        self.idle_rounds = num("IDLE_ROUNDS", 1, 1)
        self.routes = num("FULCRUM_ROUTES", 0)
        self.access_log = env.get("ACCESS_LOG", "0") == "1"
        self.policy = env.get("POLICY", "0") == "1"
        self.state = env.get("STATE", "")
        # HAProxy and NGINX also accept only once a connection's first bytes are in
        # (Fulcrum's HTTP listeners do by default).
        self.defer_accept = env.get("DEFER_ACCEPT", "0") == "1"
        # The backends speak HTTP/2 (prior knowledge): the proxies' HTTP/1.1 clients'
        # requests go to them as HTTP/2 streams.
        self.h2_backends = env.get("H2_BACKENDS", "0") == "1"
        if self.state not in ("", "local", "shared"):
            raise Fatal(f'STATE is "local" or "shared", not \'{self.state}\'')
        if suite["mode"] != "http" and (self.routes or self.access_log or self.policy or self.state
                                        or self.h2_backends):
            raise Fatal("FULCRUM_ROUTES, ACCESS_LOG, POLICY, STATE and H2_BACKENDS are bench/compare's")

    def fulcrum_needs_config(self):
        return self.routes > 0 or self.access_log or self.policy or bool(self.state) or self.h2_backends


class Harness:
    def __init__(self, root, suite, opts, machine, work, fulcrum, fulcrum_base, scenarios, targets):
        self.root, self.suite, self.opts, self.machine, self.work = root, suite, opts, machine, work
        self.fulcrum, self.fulcrum_base = fulcrum, fulcrum_base
        self.scenarios, self.targets = scenarios, targets
        self.proxies = Proxies(self)
        self.runs, self.idle_runs, self.notes, self.tls_info = [], [], [], {}
        self.haproxy_maxconn = None
        self.cert = self.key = self.combined = self.shim = None
        self.redis_port = None
        self.deny_list = []
        self.stream_load = None
        self.nginx_e = nginx_e_args(work)
        self.idle_waited = 0.0
        self.reruns_left = opts.reruns
        self.elapsed = 0

    # ------------------------------------------------------------ setup
    def start_backends(self):
        w, m = self.work, self.machine
        os.makedirs(f"{w}/www", exist_ok=True)
        os.makedirs(f"{w}/tmp", exist_ok=True)
        body = os.urandom(1048576)
        with open(f"{w}/www/1m", "wb") as f:
            f.write(body)
        self.md5_1m = hashlib.md5(body).hexdigest()
        for d in (w, f"{w}/www", f"{w}/tmp"):
            os.chmod(d, 0o755)  # nginx workers may run as an unprivileged user
        os.chmod(f"{w}/www/1m", 0o644)
        self.backend_ports = [m.free_port(), m.free_port()]
        pids = []
        for n, port in enumerate(self.backend_ports, 1):
            with open(f"{w}/backend{n}.conf", "w") as f:
                f.write(nginx_backend_conf(w, n, port, self.opts.h2_backends))
            pids.append(m.start(f"{w}/backend{n}.out", m.client_pin + ["nginx"] + self.nginx_e +
                                ["-p", w, "-c", f"{w}/backend{n}.conf"]))
        for n, (port, pid) in enumerate(zip(self.backend_ports, pids), 1):
            h2 = ("--http2-prior-knowledge",) if self.opts.h2_backends else ()
            if not checks.wait_http(m, f"http://127.0.0.1:{port}/small", pid, h2):
                raise Fatal(f"backend {n} did not come up: " + tail(f"{w}/backend{n}.out", f"{w}/backend{n}-error.log"))
        self.backends = [f"127.0.0.1:{p}" for p in self.backend_ports]
        log(f"==> backends on {self.backends[0]} and {self.backends[1]}")

    def make_certificate(self):
        d = f"{self.work}/tls"
        os.makedirs(d, exist_ok=True)
        self.cert, self.key, self.combined = f"{d}/cert.pem", f"{d}/key.pem", f"{d}/combined.pem"
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-nodes", "-sha256", "-days", "7", "-keyout", self.key, "-out", self.cert, "-subj",
                            f"/CN={clients.SNI}", "-addext", f"subjectAltName=DNS:{clients.SNI},IP:127.0.0.1"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise Fatal("openssl could not make the certificate: " + r.stderr)
        with open(self.combined, "w") as f:
            f.write(open(self.cert).read() + open(self.key).read())
        os.chmod(d, 0o755)
        for p in (self.cert, self.key, self.combined):
            os.chmod(p, 0o644)

    def start_redis(self):
        m = self.machine
        self.redis_port = m.free_port()
        m.start(f"{self.work}/redis.out", m.client_pin + ["redis-server", "--bind", "127.0.0.1", "--port",
                                                         str(self.redis_port), "--save", "", "--appendonly", "no",
                                                         "--dir", self.work])
        import socket
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.redis_port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        log(f"==> redis-server on 127.0.0.1:{self.redis_port} (STATE=shared)")

    def make_deny_list(self):
        """10,000 CIDR blocks scattered over the IPv4 space (a /24 or a /32 each, never
        in 127/8), in each proxy's syntax."""
        x, out = 12345, []

        def nxt():
            nonlocal x
            x = (x * 1103515245 + 12345) % 2147483648
            return x // 65536

        for i in range(10000):
            a = 1 + nxt() % 223
            a = 128 if a == 127 else a
            b, c, d = nxt() % 256, nxt() % 256, nxt() % 256
            out.append(f"{a}.{b}.{c}.0/24" if i % 2 else f"{a}.{b}.{c}.{d}")
        self.deny_list = out
        with open(f"{self.work}/deny.lst", "w") as f:
            f.write("".join(c + "\n" for c in out))
        with open(f"{self.work}/deny-nginx.conf", "w") as f:
            f.write("".join(f"deny {c};\n" for c in out))

    # ------------------------------------------------------------ one target
    def start_target(self, name, rid):
        """A fresh target that answers 200 (None if it did not) and the Target."""
        t = self.proxies.start(name, rid)
        if t.pid is None:
            return t, True
        if self.suite["mode"] == "tls":
            url, args = f"https://{clients.SNI}:{t.ports['tls']}/small", ["--resolve", f"{clients.SNI}:{t.ports['tls']}:127.0.0.1"]
        else:
            url, args = f"http://127.0.0.1:{t.ports['plain']}/small", []
        ok = checks.wait_http(self.machine, url, t.pid, args)
        if ok and name.startswith("nginx"):  # measure the (single) worker, not the master
            t.measure_pid = self.machine.first_child(t.pid)
        return t, ok

    def check(self, name, t):
        if self.suite["mode"] == "tls":
            return checks.check_tls(self, t.ports)
        return checks.check_plain(self, t.ports["plain"], name not in NO_PROXY)

    def proxy_logged(self, t):
        """Warnings/errors the proxy logged (start-up noise included; not rustls's complaint
        about tls_info's IP-address SNI probe)."""
        lines = []
        for path in (t.log, t.errlog):
            for line in read_text(path).splitlines():
                low = line.lower()
                if any(w in low for w in ("warn", "error", "alert", "crit", "emerg", "panic")) and not any(
                        s in line for s in ("signal 15", "exiting", "IP address presented as hostname")):
                    lines.append(line)
        return " ".join(lines[:3])

    # ------------------------------------------------------------ one run
    def wait_idle(self):
        """% of all CPUs busy in 0.5 s before a run (our processes idle), waiting up to
        IDLE_WAIT s (IDLE_WAIT_TOTAL in all) for other work to stop."""
        m, o = self.machine, self.opts
        waited = 0.0
        while True:
            s0 = m.cpu_stat()
            time.sleep(0.5)
            bg = m.busy_pct(s0, m.cpu_stat(), "cpu")
            if not (bg > o.bg_limit and waited < o.idle_wait and self.idle_waited < o.idle_wait_total):
                return bg, waited
            if waited == 0:
                log(f"   {bg}% of the CPUs busy before the run; waiting up to {o.idle_wait}s for the machine to go idle")
            waited += 0.5
            self.idle_waited += 0.5

    def run_one(self, sc, tg, r):
        m, o, name = self.machine, self.opts, sc["name"]
        rid = f"{tg}-{name}-r{r}"
        notes = []
        run = dict(scenario=name, target=tg, round=r, rps=0.0, p50=-1.0, p99=-1.0, hwm=0, cpu=-1.0, kernel=-1, errors=[],
                   bg=-1, busy_p=-1, busy_c=-1, others=-1, steal=-1, closed=-1, resumed=-1)
        bg, waited = self.wait_idle()
        run["bg"] = bg
        if bg > o.bg_limit:
            notes.append(f"{name}/{tg} round {r}: machine not idle before the run: {bg}% of all CPUs busy after "
                         f"waiting {int(waited)}s ({m.top_hogs()})")
            log(f"   warning: {bg}% of the CPUs were busy before this run (something else is running)")
        t, ok = self.start_target(tg, rid)
        problem = None
        if not ok:
            problem = "start_failed"
            notes.append(f"{name}/{tg} round {r}: did not answer 200 within 10 s; log: "
                         + tail(t.log, t.errlog))
        else:
            p = self.check(tg, t)
            if p:
                problem = "check_failed"
                notes.append(f"{name}/{tg} round {r}: check failed: " + " ".join(x + ";" for x in p))
            if self.suite["mode"] == "tls" and tg not in self.tls_info:
                self.tls_info[tg] = checks.tls_info(self, t.ports["tls"])
        if problem is None:
            out = f"{self.work}/{rid}.out"
            if o.warmup > 0:
                clients.run_load(m, sc, t.ports, o.warmup, f"{self.work}/{rid}.warmup", self.shim)
            proxy = t.pid is not None
            c0 = m.cpu_ticks(t.measure_pid) if proxy else (0, 0)
            o0, s0, t0 = m.others_ticks(), m.cpu_stat(), time.monotonic()
            clients.run_load(m, sc, t.ports, o.duration, out, self.shim)
            t1, s1, o1 = time.monotonic(), m.cpu_stat(), m.others_ticks()
            c1 = m.cpu_ticks(t.measure_pid) if proxy else (0, 0)
            run["others"] = round((o1 - o0) / m.clk_tck / (t1 - t0) / m.ncpu * 100)
            run["busy_p"] = m.busy_pct(s0, s1, m.cpu_p)
            run["busy_c"] = m.busy_pct(s0, s1, m.cpu_c)
            run["steal"] = m.busy_pct(s0, s1, "cpu", steal=True)
            run["rps"], run["p50"], run["p99"], errs = clients.parse(sc, out)
            if sc["client"] == "h2load" and sc.get("listener") == "tls" and f"{tg} (h2load)" not in self.tls_info:
                info = clients.h2load_tls_info(out)
                if info:
                    self.tls_info[f"{tg} (h2load)"] = info
            stats = read_text(out + ".tls").split()
            if len(stats) == 2:
                run["closed"], run["resumed"] = int(stats[0]), int(stats[1])
                if sc.get("tls_session") == "fresh" and run["resumed"] > 0:
                    errs.append(("resumed", run["resumed"]))
                    notes.append(f"{name}/{tg} round {r}: {run['resumed']} of {run['closed']} connections resumed a "
                                 "TLS session (the shim should prevent that)")
            if proxy:
                run["hwm"] = vm_kb(t.measure_pid, "VmHWM")
                user, kernel = c1[0] - c0[0], c1[1] - c0[1]
                run["cpu"] = round((user + kernel) / m.clk_tck / (t1 - t0) * 100, 1)
                run["kernel"] = round(kernel / (user + kernel) * 100) if user + kernel > 0 else -1
                if not m.alive(t.pid) or not m.alive(t.measure_pid):
                    errs.append(("crashed", 1))
                    notes.append(f"{name}/{tg} round {r}: proxy process exited during the run; log: "
                                 + tail(t.log))
                elif self.suite["mode"] == "tls":
                    after = checks.check_tls_after(self, t.ports)
                    if after:
                        errs.append(("check_after_failed", 1))
                        notes.append(f"{name}/{tg} round {r}: check after the run failed: {after[0]}")
            if errs:
                why = f" (h2load: {clients.h2load_why(out)})" if sc["client"] == "h2load" else ""
                notes.append(f"{name}/{tg} round {r}: load generator reported: {_errs(errs)}{why}"
                             if self.suite["mode"] == "tls" else f"{name}/{tg} round {r}: wrk reported: {_errs(errs)}")
            run["errors"] = errs
        else:
            run["errors"] = [(problem, 1)]
        if t.pid is not None and problem != "start_failed":
            lines = self.proxy_logged(t)
            if lines:
                notes.append(f"{name}/{tg} round {r}: proxy logged: {lines}")
        if t.pid is not None:
            m.stop(t.pid)
        proxy = tg not in NO_PROXY
        rs = f"  resumed {run['resumed']}/{run['closed']}" if run["closed"] >= 0 else ""
        log(f"   {name:<13} r{r} {tg:<8} {run['rps']:9.2f} req/s  p50 {run['p50']:7.3f} ms  p99 {run['p99']:7.3f} ms  "
            f"proxy cpu {(str(run['cpu']) + '%') if proxy else '-':>6}  rss {(str(run['hwm']) + ' kB') if proxy else '-':>8}  "
            f"cores {run['busy_p']}%/{run['busy_c']}%  other load {run['others']}%  errors {_errs(run['errors'])}{rs}")
        return run, notes

    def run_measured(self, sc, tg, r):
        """run_one, once more if other processes took more than BG_LIMIT% of the CPUs
        during the measurement (at most RERUNS times in all)."""
        run, notes = self.run_one(sc, tg, r)
        if run["others"] > self.opts.bg_limit and self.reruns_left > 0:
            self.reruns_left -= 1
            log(f"   other processes used {run['others']}% of the CPUs during that run; running it again")
            self.notes.append(f"{sc['name']}/{tg} round {r}: other processes used {run['others']}% of the CPUs "
                              "during the run; it was discarded and run again")
            self.notes += ["[discarded run] " + n for n in notes]
            run, notes = self.run_one(sc, tg, r)
        self.notes += notes
        self.runs.append(run)

    def run_all(self):
        import idle
        start = time.monotonic()
        nt = len(self.targets)
        for sc in self.scenarios:
            if sc["client"] == "idle":
                idle.run_idle_scenario(self)
                continue
            log(f"==> scenario {sc['name']}: {clients.describe(sc, self.opts.duration)}")
            for r in range(1, self.opts.rounds + 1):
                for k in range(nt):
                    self.run_measured(sc, self.targets[(k + r - 1) % nt], r)
        self.elapsed = int(time.monotonic() - start)


def _errs(errs):
    return ",".join(f"{k}={v}" for k, v in errs) if errs else "0"


