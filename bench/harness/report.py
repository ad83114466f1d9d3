"""The report: one markdown table per scenario (medians over rounds), the ratios of Fulcrum
to the others, the notes, and the raw runs; written to bench/results/SUITE-DATE.md and
printed (up to the raw runs) on standard output.
"""

import os
import platform
import statistics
import subprocess
import time

from machine import sh
from proxies import NO_PROXY

FATAL = {"crashed", "start_failed", "check_failed", "check_after_failed", "wrk_failed", "h2load_failed", "not_h2",
         "other-load"}
NAMES = {"haproxy": "HAProxy", "nginx": "NGINX"}


def med(v):
    return statistics.median(v) if v else 0


def problems(runs, bg_limit):
    """[(kind, total)] over runs, in first-seen order; other-load counts disturbed runs."""
    out = {}
    for r in runs:
        for k, n in r["errors"]:
            out[k] = out.get(k, 0) + n
        if r["others"] > bg_limit:
            out["other-load"] = out.get("other-load", 0) + 1
    return list(out.items())


def fmt_problems(p):
    return ", ".join(f"{k} x{n}" if k in FATAL else f"{k}={n}" for k, n in p) if p else "none"


def table(h, sc):
    """Markdown table for one scenario."""
    mbps, tls = sc.get("mbps", False), h.suite["mode"] == "tls"
    base_name = next((t for t in h.suite["targets"] if t in NO_PROXY), None)
    rows = [t for t in h.targets if any(r["target"] == t and r["scenario"] == sc["name"] for r in h.runs)]
    by = {t: [r for r in h.runs if r["target"] == t and r["scenario"] == sc["name"]] for t in rows}
    base = med([r["rps"] for r in by.get(base_name, [])]) if base_name in by else 0
    head = ["target", "req/s"] + (["MB/s"] if mbps else []) + ["spread"] + (
        [f"vs {'base' if base_name == 'baseline' else 'direct'}"] if base_name else []) + [
        "p50 ms", "p99 ms", "proxy CPU", "us/req", "in kernel", "max RSS", "client core"] + (["resumed"] if tls else []) + [
        "problems"]
    out = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 2) + "---|"]
    medians, usr, user_us = {}, {}, {}
    for t in rows:
        runs = by[t]
        proxy = t not in NO_PROXY
        rps = [r["rps"] for r in runs]
        m = med(rps)
        medians[t] = m
        ok = [r for r in runs if r["rps"] > 0]
        cpu = [r["cpu"] for r in runs if r["cpu"] >= 0]
        us = [r["cpu"] / 100 * 1e6 / r["rps"] for r in ok if r["cpu"] >= 0]
        if proxy and us:
            usr[t] = med(us)
        kernel = [r.get("kernel", -1) for r in ok if r["cpu"] >= 0 and r.get("kernel", -1) >= 0]
        if proxy and us and kernel:
            user_us[t] = usr[t] * (100 - med(kernel)) / 100
        hwm = max(r["hwm"] for r in runs)
        cc = [r["busy_c"] for r in runs if r["busy_c"] >= 0]
        p = problems(runs, h.opts.bg_limit)
        closed = sum(r["closed"] for r in runs if r["closed"] > 0)
        resumed = sum(r["resumed"] for r in runs if r["closed"] > 0)
        name = (f"{t} (no proxy)" if not proxy else t) + (" (!)" if p else "")
        cells = [name, f"{m:.0f}"] + ([f"{m * 1048576 / 1e6:.0f}"] if mbps else [])
        cells.append(f"{(max(rps) - min(rps)) / m * 100:.1f}%" if m > 0 else "-")
        if base_name:
            cells.append(f"{m / base:.2f}" if base > 0 else "-")
        cells += [f"{med([r['p50'] for r in ok]):.3f}" if ok else "-", f"{med([r['p99'] for r in ok]):.3f}" if ok else "-",
                  f"{med(cpu):.0f}%" if proxy and cpu else "-", f"{usr[t]:.1f}" if t in usr else "-",
                  f"{med(kernel):.0f}%" if proxy and kernel else "-",
                  f"{hwm / 1024:.1f} MB" if proxy and hwm else "-",
                  f"{med(cc):.0f}%" if h.machine.proxy_pin and cc else "-"]
        if tls:
            cells.append(f"{resumed / closed * 100:.1f}%" if closed > 0 else "-")
        cells.append(fmt_problems(p))
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    f = medians.get("fulcrum", 0)
    if f > 0:
        for o in ("haproxy", "nginx"):
            if medians.get(o, 0) > 0:
                out.append(f"Fulcrum/{NAMES[o]} req/s: **{f / medians[o]:.2f}x**  ")
        if base > 0:
            out.append(f"Fulcrum/{base_name} req/s: **{f / base:.2f}x**  ")
        if usr.get("fulcrum", 0) > 0:
            s = [f"Fulcrum/{NAMES[o]} **{usr['fulcrum'] / usr[o]:.2f}x**" for o in ("haproxy", "nginx") if usr.get(o, 0) > 0]
            if s:
                out.append("proxy CPU per request (us/req, lower is better): " + ", ".join(s) + "  ")
        if user_us.get("fulcrum", 0) > 0:
            s = [f"Fulcrum/{NAMES[o]} **{user_us['fulcrum'] / user_us[o]:.2f}x**" for o in ("haproxy", "nginx")
                 if user_us.get(o, 0) > 0]
            if s:
                out.append("of which in user space (us/req x (100% - in kernel)): " + ", ".join(s))
    return "\n".join(out)


def idle_table(h):
    o = h.opts
    out = [f"| proxy | RSS before | RSS with {o.idle_conns} idle | bytes/idle conn | RSS with {o.slow_conns} slowloris | "
           "peak RSS, slowloris | bytes/slow conn | problems |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    per = {}
    for t in h.targets:
        runs = [r for r in h.idle_runs if r["target"] == t]
        if not runs:
            continue

        def col(kind, key):
            return [r[key] for r in runs if r["kind"] == kind and r["after"] > 0]

        def mb(v):
            return f"{med(v) / 1024:.1f} MB" if v else "-"

        def bpc(kind):
            v = [float(r["bpc"]) for r in runs if r["kind"] == kind and r["bpc"] != "-"]
            if v:
                per[(t, kind)] = med(v)
                return f"{med(v):.0f} ({med(v) / 1024:.1f} KiB)"
            return "-"

        prob = ", ".join(("slowloris: " if r["kind"] == "slow" else "idle: ") + r["problems"] for r in runs
                         if r["problems"] != "0")
        out.append(f"| {t}{' (!)' if prob else ''} | {mb(col('idle', 'before'))} | {mb(col('idle', 'after'))} | "
                   f"{bpc('idle')} | {mb(col('slow', 'after'))} | {mb(col('slow', 'hwm'))} | {bpc('slow')} | "
                   f"{prob or 'none'} |")
    out.append("")
    for o_ in ("haproxy", "nginx"):
        for kind, what in (("idle", "idle"), ("slow", "slowloris")):
            if per.get(("fulcrum", kind)) and per.get((o_, kind), 0) > 0:
                out.append(f"Fulcrum/{NAMES[o_]} bytes per {what} conn: **{per[('fulcrum', kind)] / per[(o_, kind)]:.1f}x**  ")
    return "\n".join(out)


def versions(h):
    v = []
    if "haproxy" in h.targets_all:
        v.append(" ".join(sh(["haproxy", "-v"]).splitlines()[0].split()[:3]))
    if any(t.startswith("nginx") for t in h.targets_all):
        n = sh(["nginx", "-v"]).strip().split(": ", 1)[-1]
        if h.suite["mode"] == "tcp":
            n += f" + {h.stream_load.rstrip(';')}" if h.stream_load else " (stream built in)"
        v.append(n)
    v.append(" ".join(sh(["wrk", "-v"]).splitlines()[0].split()[:2]))
    if h.suite["mode"] == "tls":
        v.append(sh(["h2load", "--version"]).splitlines()[0])
        v.append(" ".join(sh(["openssl", "version"]).split()[:2]))
    return "; ".join(v)


def write(h, stamp):
    o, m, s = h.opts, h.machine, h.suite
    wrk_runs = len([sc for sc in h.scenarios if sc["client"] != "idle"]) * o.rounds * len(h.targets)
    has_idle = any(sc["client"] == "idle" for sc in h.scenarios)
    L = [f"# {s['title']} ({time.strftime('%Y-%m-%d %H:%M:%S %Z')})", ""]
    model = next((line.split(": ", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    L.append(f"- machine: {m.ncpu} CPUs ({model}), Linux {platform.release()}")
    if h.fulcrum:
        rev = sh(["git", "-C", h.root, "rev-parse", "--short", "HEAD"]).strip() or "?"
        dirty = subprocess.run(["git", "-C", h.root, "diff", "--quiet", "HEAD", "--", "src", "Cargo.toml", "Cargo.lock"],
                               capture_output=True).returncode != 0
        ver = sh([h.fulcrum, "--version"]).splitlines()
        L.append(f"- fulcrum: {ver[0] if ver else '?'} ({rev}{', uncommitted changes in src' if dirty else ''}), {h.fulcrum}")
    else:
        L.append("- fulcrum: not run (SKIP_FULCRUM=1 or not in TARGETS)")
    L.append(f"- {versions(h)}")
    L += [f"- {a}" if not a.startswith("  ") else a for a in s.get("about", [])]
    if wrk_runs:
        L.append(f"- {o.duration}s measured per run after {o.warmup}s warm-up, {o.rounds} rounds per scenario, "
                 "targets rotated each round, fresh proxy process per run")
    if has_idle:
        import idle
        L.append(f"- idle: bench/idle_clients.py holds {o.idle_conns} idle keep-alive connections (one GET /small each), "
                 "then, with a fresh proxy,")
        L.append(f"  {o.slow_conns} slowloris connections (a partial request head each); RSS read {o.idle_settle}s after "
                 f"the last one was set up; {o.idle_rounds} round(s)")
        L.append(f"- header timeouts: {idle.HDR_TIMEOUTS}")
    if o.state:
        L.append(f"- STATE={o.state}: clients kept on their backend by address in a stick table, and counted against a "
                 "rate limit that never refuses" + ("; shared: Fulcrum through redis-server, HAProxy in a peers section, "
                                                    "NGINX not (it cannot)" if h.redis_port else ""))
    if o.h2_backends:
        L.append("- H2_BACKENDS=1: the backends speak HTTP/2 (prior knowledge) and the proxies' HTTP/1.1 clients' "
                 "requests go to them as HTTP/2 streams (Fulcrum `http_version = \"2\"`, HAProxy `proto h2`); "
                 "NGINX cannot (its proxy_pass speaks HTTP/1.x), nor wrk straight to the backends")
    if o.policy:
        L.append("- POLICY=1: a rate limit per client address that never refuses, and a deny list of 10,000 scattered "
                 "CIDR blocks, in every proxy")
    L.append(f"- CPU pinning: {m.pin_desc}")
    L.append(f"- total time measuring: {h.elapsed}s")
    if h.tls_info:
        L.append("- negotiated (openssl s_client with OpenSSL's defaults, as wrk; \"(h2load)\": what h2load got, it "
                 "prefers AES-128-GCM):")
        L += [f"  - {k}: {v}" for k, v in sorted(h.tls_info.items())]
    nbusy = len([r for r in h.runs if r["bg"] > o.bg_limit or r["others"] > o.bg_limit])
    if nbusy:
        L += ["", f"**WARNING: other processes were using more than {o.bg_limit}% of the CPUs before or during {nbusy} "
                  "of the", "runs (see the notes and the raw runs). Those numbers are not reliable; rerun on an idle "
                  "machine.**"]
    if wrk_runs:
        L += [""] + s["columns"] + [f"See the header of {s['script']}."]
    for sc in h.scenarios:
        L += ["", "## " + sc["title"].format(idle_conns=o.idle_conns, slow_conns=o.slow_conns), ""]
        if sc["client"] == "idle":
            L += ["RSS = VmRSS of the proxy process (NGINX: the worker); bytes/conn = (RSS with the connections - RSS "
                  "before)", "/ connections open at the reading, each kind against its own fresh proxy process (median "
                  "over rounds);", "peak RSS = VmHWM. Kernel socket buffers are not in RSS. (!) = problems, see the "
                  "notes.", "", idle_table(h)]
        else:
            L.append(table(h, sc))
    L += ["", "## Notes", ""]
    L += [f"- {n}" for n in h.notes] or ["- none: no errors, crashes or failed checks"]
    stolen = [f"{r['scenario']}/{r['target']} r{r['round']} ({r['steal']}%)" for r in h.runs if r["steal"] > o.steal_limit]
    if stolen:
        L.append(f"- hypervisor steal above {o.steal_limit}% of the CPUs (numbers likely low, compare with the other "
                 "rounds): " + ", ".join(stolen))
    L += ["", "## Raw runs"]
    if wrk_runs:
        tls = s["mode"] == "tls"
        L += ["", f"proxy CPU % = proxy process CPU time / wall time; {m.cpu_p}/{m.cpu_c} busy = whole-core utilisation "
                  "during", "the run (proxy core / client core; \"cpu\" = all CPUs when not pinned); idle check = % of "
                  "all CPUs", "busy in the 0.5 s before the run, when none of our processes was working; other load = "
                  "CPU used by", "processes not started by this script during the run, as % of all CPUs; steal = CPU "
                  "time the", "hypervisor took away during the run (virtual machines only), as % of all CPUs"
              + ("; resumed = connections" if tls else "."),
              *(["wrk closed that had resumed a TLS session / connections it closed."] if tls else []), "",
              f"| scenario | target | round | req/s | p50 ms | p99 ms | VmHWM kB | proxy CPU % | {m.cpu_p} busy % | "
              f"{m.cpu_c} busy % | idle check % | other load % | steal % |{' resumed |' if tls else ''} errors |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if tls else "") + "---|"]
        for r in h.runs:
            def d(k):
                if r[k] == -1 or (k == "hwm" and r[k] == 0):
                    return "-"
                return f"{r[k]:.3f}" if k in ("p50", "p99") else str(r[k])
            res = f" {r['resumed']}/{r['closed']} |" if r["closed"] >= 0 else " - |"
            errs = ",".join(k if k in FATAL else f"{k}={n}" for k, n in r["errors"]) or "0"
            L.append(f"| {r['scenario']} | {r['target']} | {r['round']} | {r['rps']:.2f} | {d('p50')} | {d('p99')} | "
                     f"{d('hwm')} | {d('cpu')} | {d('busy_p')} | {d('busy_c')} | {d('bg')} | {d('others')} | "
                     f"{d('steal')} |{res if tls else ''} {errs} |")
    if has_idle:
        L += ["", "Scenario idle: asked = connections opened; open = still open at the RSS reading; set up = seconds "
                  "from the", "first connect to the last connection set up; read at = seconds from the first connect to "
                  "the RSS reading.", "",
              "| target | kind | round | asked | open | RSS before kB | RSS after kB | VmHWM kB | bytes/conn | set up s | "
              "read at s | problems |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in h.idle_runs:
            L.append(f"| {r['target']} | {'slowloris' if r['kind'] == 'slow' else r['kind']} | {r['round']} | "
                     f"{r['asked']} | {r['open']} | {r['before']} | {r['after']} | {r['hwm']} | {r['bpc']} | "
                     f"{r['setup']} | {r['read']} | {r['problems']} |")
    text = "\n".join(L) + "\n"
    results = os.environ.get("RESULTS_DIR") or f"{h.root}/bench/results"
    os.makedirs(results, exist_ok=True)
    path = f"{results}/{h.suite_name}-{stamp}.md"
    with open(path, "w") as f:
        f.write(text)
    print()
    print(text.split("\n## Raw runs")[0])
    print(f"Written to {path}")
