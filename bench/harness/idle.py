"""bench/compare's scenario "idle": memory per client connection that does nothing.

For each proxy, each time with a FRESH process: read VmRSS, open IDLE_CONNS keep-alive
connections that did one GET each (then SLOW_CONNS slowloris connections, against
another fresh process) with bench/idle_clients.py on the client CPU, wait IDLE_SETTLE
seconds, read VmRSS and VmHWM again. bytes/conn = (after - before) / connections open.
"""

import time

from machine import log, read_text, tail, vm_kb
from proxies import NO_PROXY

SETUP_CONC = 50  # connections being set up at once by the client
SETUP_LIMIT = 60  # seconds the client may take to set up all of them
SHORTEST_HDR_TIMEOUT = 10  # Fulcrum's timeouts.request_header (HAProxy and NGINX: 60 s)
HDR_TIMEOUTS = ("fulcrum: timeouts.request_header 10 s (serve's default), timeouts.idle 60 s; haproxy: no timeout "
                "http-request/http-keep-alive, so timeout client 60 s; nginx: client_header_timeout 60 s, "
                "keepalive_timeout 75 s (defaults)")


def idle_one(h, tg, kind, r):
    m, o = h.machine, h.opts
    rid = f"{tg}-idle-{kind}-r{r}"
    n = o.slow_conns if kind == "slow" else o.idle_conns
    out = f"{h.work}/{rid}.client"
    hold = o.idle_settle + 1
    problems, notes = [], []
    before = after = hwm = 0
    bpc = setup_s = read_s = "-"
    opened = 0
    t_read = None
    h.haproxy_maxconn = n + 100
    t, ok = h.start_target(tg, rid)
    h.haproxy_maxconn = None
    tag = f"idle/{kind}/{tg} round {r}"
    if not ok:
        problems.append("start_failed")
        notes.append(f"{tag}: did not answer 200 within 10 s; log: " + tail(t.log))
    else:
        time.sleep(0.5)
        before = vm_kb(t.measure_pid, "VmRSS")
        cpid = m.start(out, m.client_pin + ["timeout", "-k", "5", str(SETUP_LIMIT + hold + 30), "python3",
                                            f"{h.root}/bench/idle_clients.py", str(t.ports["plain"]), str(n),
                                            "idle" if kind == "idle" else "slow", str(hold), str(SETUP_CONC),
                                            str(SETUP_LIMIT)])
        for _ in range((SETUP_LIMIT + 15) * 10):
            if _has_ready(out) or not m.alive(cpid):
                break
            time.sleep(0.1)
        if _has_ready(out):
            time.sleep(o.idle_settle)
            t_read = time.time()
            after = vm_kb(t.measure_pid, "VmRSS")
            hwm = vm_kb(t.measure_pid, "VmHWM")
        else:
            problems.append("client_failed")
            notes.append(f"{tag}: the client did not set up its connections; output: " + tail(out))
        for _ in range((hold + 10) * 10):  # it exits by itself hold s after READY
            if not m.alive(cpid):
                break
            time.sleep(0.1)
        m.stop(cpid)
        if not m.alive(t.pid) or not m.alive(t.measure_pid):
            problems.append("crashed")
            notes.append(f"{tag}: proxy process exited during the run; log: " + tail(t.log))
    if t_read is not None:
        start = ready = 0.0
        ready_open = failed = closed_early = 0
        fails, closes = [], {}
        for line in read_text(out).splitlines():
            v = line.split()
            if not v:
                continue
            if v[0] == "START":
                start = float(v[1])
            elif v[0] == "READY":
                ready, ready_open, failed = float(v[1]), int(v[2].split("=")[1]), int(v[3].split("=")[1])
            elif v[0] == "FAIL" and len(fails) < 3:
                fails.append(" ".join(v[2:]))
            elif v[0] == "CLOSED" and float(v[1]) <= t_read:
                closed_early += 1
                key = " ".join(v[2:4])
                closes[key] = closes.get(key, 0) + 1
        opened = ready_open - closed_early
        setup_s, read_s = f"{ready - start:.1f}", f"{t_read - start:.1f}"
        if opened > 0:
            bpc = f"{(after - before) * 1024 / opened:.0f}"
        if failed > 0:
            problems.append(f"failed={failed}")
            notes.append(f"{tag}: {failed} of {n} connections could not be set up: " + ";".join(fails))
        if closed_early > 0:
            problems.append(f"closed={closed_early}")
            top = sorted(closes.items(), key=lambda kv: -kv[1])[:2]
            notes.append(f"{tag}: the proxy closed {closed_early} connections before the RSS reading ("
                         + " ".join(f"{c} {k}" for k, c in top) + ")")
        if kind == "slow" and t_read - start >= SHORTEST_HDR_TIMEOUT:
            problems.append("late")
            notes.append(f"{tag}: RSS read {read_s}s after the first partial head, not within the shortest header "
                         f"timeout ({SHORTEST_HDR_TIMEOUT}s)")
    if ok:
        lines = h.proxy_logged(t)
        if lines:
            notes.append(f"{tag}: proxy logged: {lines}")
    if t.pid is not None:
        m.stop(t.pid)
    h.notes += notes
    prob = ",".join(problems) or "0"
    h.idle_runs.append(dict(target=tg, kind=kind, round=r, asked=n, open=opened, before=before, after=after,
                            hwm=hwm, bpc=bpc, setup=setup_s, read=read_s, problems=prob))
    log(f"   {kind:<9} r{r} {tg:<8} {n:5d} asked {opened:5d} open  rss {before:7d} kB -> {after:7d} kB (peak "
        f"{hwm:7d} kB)  {bpc:>6} B/conn  set up in {setup_s}s, read at {read_s}s  problems {prob}")


def run_idle_scenario(h):
    o = h.opts
    targets = [t for t in h.targets if t not in NO_PROXY]
    if not targets:
        log("==> scenario idle: no proxy in TARGETS, skipped")
        return
    log(f"==> scenario idle: bench/idle_clients.py, {o.idle_conns} idle keep-alive connections, then "
        f"{o.slow_conns} slowloris connections, {o.idle_settle}s before reading RSS")
    log(f"   header timeouts: {HDR_TIMEOUTS}")
    for r in range(1, o.idle_rounds + 1):
        for k in range(len(targets)):
            tg = targets[(k + r - 1) % len(targets)]
            idle_one(h, tg, "idle", r)
            idle_one(h, tg, "slow", r)


def _has_ready(path):
    return any(line.startswith("READY ") for line in read_text(path).splitlines())


