"""bench/harness: the one benchmark harness behind bench/compare, bench/tls, bench/l4 and
bench/instructions.

    python3 bench/harness SUITE        (SUITE: compare, tls, l4, instructions)

The suites and their scenarios are data, in bench/scenarios.toml; settings come from the
environment (DURATION, ROUNDS, SCENARIOS, TARGETS, FULCRUM_BIN, ...; see each script's
header). Modules: machine (processes, pinning, ports, /proc), proxies (configs),
clients (wrk, h2load), checks (curl, openssl), runner (rounds and runs), idle (memory per
idle connection), report (tables), instructions (callgrind).
Everything listens on 127.0.0.1 only, and every process started is stopped on exit.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import Fatal, Machine, install_missing, log, raise_nofile  # noqa: E402
from proxies import find_stream_module  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fulcrum_binary(env):
    if env.get("FULCRUM_BIN"):
        path = env["FULCRUM_BIN"]
    else:
        if not subprocess.run(["which", "cargo"], capture_output=True).returncode == 0:
            raise Fatal("cargo not found (install Rust, or set FULCRUM_BIN)")
        log("==> cargo build --release --bin fulcrum")
        if subprocess.run(["cargo", "build", "--release", "--bin", "fulcrum"], cwd=ROOT, stdout=sys.stderr).returncode:
            raise Fatal("cargo build failed")
        tdir = env.get("CARGO_TARGET_DIR") or f"{ROOT}/target"
        path = os.path.join(ROOT, tdir, "release", "fulcrum")
    if not os.access(path, os.X_OK):
        raise Fatal(f"fulcrum binary not found at {path}")
    return path


def select(suite, env):
    """The scenarios (suite's data, in the order asked) and targets of this run."""
    by_name = {sc["name"]: sc for sc in suite["scenario"]}
    asked = env.get("SCENARIOS", "").split() or [sc["name"] for sc in suite["scenario"] if sc.get("default", True)]
    for s in asked:
        if s not in by_name:
            raise Fatal(f"unknown scenario '{s}' ({', '.join(by_name)})")
    known = suite.get("targets", []) + suite.get("extra_targets", [])
    targets = env.get("TARGETS", "").split() or list(suite.get("targets", []))
    if env.get("FULCRUM_BASE_BIN") and "fulcrum-base" not in targets:
        targets.append("fulcrum-base")
    if env.get("H2_BACKENDS") == "1":
        # wrk cannot speak HTTP/2 to the backends, nor NGINX's proxy_pass.
        targets = [t for t in targets if t not in ("baseline", "nginx")]
    if env.get("SKIP_FULCRUM") == "1":
        targets = [t for t in targets if t != "fulcrum"]
    for t in targets:
        if t not in known:
            raise Fatal(f"unknown target '{t}' ({', '.join(known)})")
    if not targets:
        raise Fatal("no target left in TARGETS")
    return [by_name[s] for s in asked], targets


def dependencies(suite, scenarios, targets, opts):
    mode = suite["mode"]
    need = {"haproxy": ["haproxy"], "nginx": ["nginx"], "wrk": ["wrk"], "curl": ["curl", "ca-certificates"],
            "taskset": ["util-linux"]}
    if mode == "tls":
        need.update({"h2load": ["nghttp2-client"], "openssl": ["openssl"], "cc": ["gcc", "libc6-dev"]})
    if any(sc["client"] == "idle" for sc in scenarios):
        need["python3"] = ["python3"]
    if opts.state == "shared":
        need["redis-server"] = ["redis-server"]
    install_missing(need)
    stream = None
    if mode == "tcp" and "nginx" in targets:
        stream = find_stream_module()
        if stream is None:
            install_missing({"/usr/lib/nginx/modules/ngx_stream_module.so": ["libnginx-mod-stream"]})
            stream = find_stream_module()
            if stream is None:
                raise Fatal("NGINX's stream module is neither built in nor installed (libnginx-mod-stream)")
    if mode == "tls":
        v = subprocess.run(["nginx", "-V"], capture_output=True, text=True).stderr.split()
        if "nginx" in targets and ("--with-http_v2_module" not in v or "--with-http_ssl_module" not in v):
            raise Fatal("this nginx has no HTTP/2 or no TLS module")
        if "haproxy" in targets:
            vv = subprocess.run(["haproxy", "-vv"], capture_output=True, text=True).stdout
            if "USE_OPENSSL=1" not in vv and "+OPENSSL" not in vv:
                raise Fatal("this haproxy was built without OpenSSL")
    return stream


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python3 bench/harness SUITE (compare, tls, l4, instructions)")
    name = sys.argv[1]
    with open(f"{ROOT}/bench/scenarios.toml", "rb") as f:
        suites = tomllib.load(f)
    if name not in suites:
        sys.exit(f"bench/harness: unknown suite '{name}' ({', '.join(suites)})")
    suite = suites[name]
    prog = suite["script"]
    os.environ["LC_ALL"] = "C"
    os.environ["PATH"] += ":/usr/local/sbin:/usr/sbin:/sbin"
    env = os.environ
    work = None
    machine = None
    keep = env.get("KEEP_TMP") == "1"

    def on_signal(sig, _frame):
        raise SystemExit(128 + sig)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if suite["mode"] == "instructions":
            import instructions
            instructions.main(ROOT, suite, env)
            return
        from runner import Harness, Options
        import clients
        import report
        opts = Options(env, suite)
        scenarios, targets = select(suite, env)
        stream = dependencies(suite, scenarios, targets, opts)
        fulcrum = fulcrum_binary(env) if any(t.startswith("fulcrum") and t != "fulcrum-base" for t in targets) else None
        base = env.get("FULCRUM_BASE_BIN") if "fulcrum-base" in targets else None
        has_idle = any(sc["client"] == "idle" for sc in scenarios)
        raise_nofile(max(opts.idle_conns, opts.slow_conns) + 200 if has_idle else 0)
        work = tempfile.mkdtemp(prefix=f"fulcrum-{name}.")
        os.chmod(work, 0o755)  # nginx workers may run as an unprivileged user
        machine = Machine(work, opts.pin, opts.proxy_cpu, opts.client_cpu, suite["client_desc"])
        h = Harness(ROOT, suite, opts, machine, work, fulcrum, base, scenarios, targets)
        h.suite_name, h.stream_load, h.targets_all = name, stream, targets
        if suite["mode"] == "tls":
            h.make_certificate()
            h.shim = clients.build_shim(work)
        h.start_backends()
        if opts.state == "shared":
            h.start_redis()
        if opts.policy:
            h.make_deny_list()
        if suite["mode"] == "tls" and fulcrum:
            check_fulcrum_config(h, prog)
        runs = len([sc for sc in scenarios if sc["client"] != "idle"]) * opts.rounds * len(targets)
        if runs:
            log(f"==> {runs} runs of {opts.duration}s (+{opts.warmup}s warm-up); pinning: {machine.pin_desc}")
        if has_idle:
            log(f"==> scenario idle: {opts.idle_rounds} round(s); pinning: {machine.pin_desc}")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        h.run_all()
        report.write(h, stamp)
    except Fatal as e:
        log(f"{prog}: error: {e}")
        sys.exit(1)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if machine:
            machine.stop_all()
        if work:
            if keep:
                log(f"temp dir kept: {work}")
            else:
                subprocess.run(["rm", "-rf", work])


def check_fulcrum_config(h, prog):
    """`fulcrum check` must take the generated config: say so once instead of failing every run."""
    ports = {"tls": h.machine.free_port(), "h2c": h.machine.free_port()}
    path = f"{h.work}/fulcrum-check.toml"
    with open(path, "w") as f:
        f.write(h.proxies.fulcrum_toml("fulcrum", "fulcrum-check", ports, "tls"))
    r = subprocess.run([h.fulcrum, "check", "-c", path], capture_output=True, text=True)
    if r.returncode != 0:
        raise Fatal(f"fulcrum check rejected the benchmark config ({path}):\n{r.stdout}{r.stderr}")


if __name__ == "__main__":
    main()
