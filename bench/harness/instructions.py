"""bench/instructions: instructions Fulcrum executes per request, counted by valgrind's
callgrind over a fixed request mix (the [instructions] scenarios of bench/scenarios.toml).

Wall-clock figures move 5-30 % between runs here; an instruction count for the same binary
and the same requests moves by well under 1 %, so this is the figure that shows a
regression. For each scenario: Fulcrum (threads = 1, no access log) starts under
`valgrind --tool=callgrind --instr-atstart=no`, warm-up requests go first, counting is
switched on (callgrind_control -i on), the scenario's requests are sent over ONE client
connection at a time, counting is switched off, and callgrind's Ir total is read back.
"""

import glob
import os
import random
import shutil
import subprocess
import tempfile
import time

from checks import wait_http
from machine import Fatal, Machine, install_missing, log, tail
from proxies import nginx_backend_conf


def load(sc, url, n):
    """The client command for n requests of scenario sc against url."""
    path = sc["path"]
    if sc["client"] == "curl":  # a new connection per request
        return ["curl", "-s", "-o", "/dev/null", "-H", "Connection: close", f"{url}{path}?[1-{n}]"]
    return ["h2load"] + (["--h1"] if sc.get("http1") else []) + ["-c1"] + ([] if sc.get("http1") else ["-m1"]) + [
        "-n", str(n), f"{url}{path}"]


def count(h, sc, requests):
    """(requests sent, instructions counted) for one scenario."""
    m, w = h["machine"], h["work"]
    port, tlsport = m.free_port(), m.free_port()
    cfg = f"{w}/fulcrum.toml"
    with open(cfg, "w") as f:
        f.write(f'threads = 1\naccess_log = false\n[[listeners]]\nname = "plain"\nbind = "127.0.0.1:{port}"\n'
                f'pool = "be"\n[[listeners]]\nname = "tls"\nbind = "127.0.0.1:{tlsport}"\npool = "be"\n'
                f'tls = {{ certificates = [{{ cert = "{w}/cert.pem", key = "{w}/key.pem" }}] }}\n[pools.be]\n'
                f'backends = [{{ address = "127.0.0.1:{h["backend"]}" }}]\n')
    out = f"{w}/callgrind.{sc['name']}.{random.randrange(1 << 30)}"
    logf = f"{w}/fulcrum-{sc['name']}.log"
    pid = m.start(logf, ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                         h["fulcrum"], "run", "-c", cfg])
    if not wait_http(m, f"http://127.0.0.1:{port}/small", pid, tries=600):
        raise Fatal("Fulcrum did not start: " + tail(logf))
    if not wait_http(m, f"https://127.0.0.1:{tlsport}/small", pid, tries=600):
        raise Fatal("Fulcrum's TLS listener did not answer")
    url = f"https://127.0.0.1:{tlsport}" if sc.get("listener") == "tls" else f"http://127.0.0.1:{port}"
    n = requests // sc.get("requests_div", 1)

    def run(argv, what):
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            raise Fatal(f"{sc['name']} {what} failed: " + " ".join((r.stdout + r.stderr).splitlines()[-3:]))
        return r.stdout

    run(load(sc, url, sc["warmup"]), "warm-up")
    subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True)
    text = run(load(sc, url, n), "load")
    if sc["client"] == "h2load" and f"{n} succeeded" not in text:
        raise Fatal(f"{sc['name']}: not every request succeeded: "
                    + next((x for x in text.splitlines() if x.startswith("requests:")), "?"))
    subprocess.run(["callgrind_control", "-i", "off", str(pid)], capture_output=True)
    subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True)
    m.stop(pid)
    total = 0
    for dump in glob.glob(out + "*"):
        with open(dump, errors="replace") as f:
            for line in f:
                if line.startswith("totals:"):
                    total += int(line.split()[1])
    return n, total


def main(root, suite, env):
    install_missing({"valgrind": ["valgrind"], "nginx": ["nginx"], "h2load": ["nghttp2-client"], "curl": ["curl"],
                     "openssl": ["openssl"]})
    requests = int(env.get("REQUESTS", "2000"))
    rounds = int(env.get("ROUNDS", "1"))
    by_name = {sc["name"]: sc for sc in suite["scenario"]}
    names = env.get("SCENARIOS", "").split() or list(by_name)
    for s in names:
        if s not in by_name:
            raise Fatal(f"unknown scenario {s}")
    if env.get("FULCRUM_BIN"):
        fulcrum = env["FULCRUM_BIN"]
    else:
        subprocess.run(["cargo", "build", "--release", "--bin", "fulcrum", "-q"], cwd=root, check=True)
        fulcrum = f"{root}/target/release/fulcrum"
    if not os.access(fulcrum, os.X_OK):
        raise Fatal(f"no Fulcrum binary at {fulcrum}")
    work = tempfile.mkdtemp(prefix="fulcrum-instructions.")
    m = Machine(work, "0", 0, 1, "")
    try:
        os.makedirs(f"{work}/www")
        os.makedirs(f"{work}/tmp")
        with open(f"{work}/www/1m", "wb") as f:
            f.write(os.urandom(1048576))
        subprocess.run(["chmod", "-R", "a+rX", work])
        backend = m.free_port()
        with open(f"{work}/backend.conf", "w") as f:
            f.write(nginx_backend_conf(work, 1, backend))
        bpid = m.start(f"{work}/backend.out", ["nginx", "-e", f"{work}/backend-error.log", "-p", work, "-c",
                                               f"{work}/backend.conf"])
        if not wait_http(m, f"http://127.0.0.1:{backend}/small", bpid):
            raise Fatal("the backend did not start")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-sha256", "-days", "7", "-subj", "/CN=bench.test", "-addext", "subjectAltName=DNS:bench.test",
                        "-keyout", f"{work}/key.pem", "-out", f"{work}/cert.pem"], capture_output=True, check=True)
        h = {"machine": m, "work": work, "backend": backend, "fulcrum": fulcrum}
        per = {s: [] for s in names}
        for rnd in range(1, rounds + 1):
            for s in names:
                n, total = count(h, by_name[s], requests)
                per[s].append(round(total / n))
                log(f"   round {rnd}  {s}: {n} requests, {total} instructions, {per[s][-1]} per request")
    finally:
        m.stop_all()
        if env.get("KEEP_TMP") == "1":
            log(f"temp dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    ver = subprocess.run([fulcrum, "--version"], capture_output=True, text=True).stdout.strip()
    if env.get("FULCRUM_BIN"):
        who = f"- Fulcrum: {ver} (the binary {fulcrum})"
    else:
        rev = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip() or "?"
        who = f"- Fulcrum: {ver} (built from {rev})"
    vg = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    lines = ["# Instructions per request (callgrind)", "", who,
             f"- {vg}, one worker thread, one client connection at a time, {requests} requests per scenario "
             "(1m: /25, close: /4), " + f"{rounds} round(s)",
             "- counted: every instruction of the Fulcrum process (all its threads) from the first to the last request "
             "of the scenario",
             "- close and 1m depend on timing as well as on the code (how many wakeups a connection takes; how many "
             "splice and read calls a 1 MiB body takes, with the kernel doing the copying): compare them over several "
             "rounds", "", "| scenario | instructions per request | rounds | spread |", "|---|---:|---|---:|"]
    for s in names:
        v = per[s]
        spread = 100 * (max(v) - min(v)) / min(v) if min(v) else 0
        lines.append(f"| {s} | {v[0]} | {' '.join(map(str, v))} | {spread:.2f}% |")
    text = "\n".join(lines) + "\n"
    os.makedirs(f"{root}/bench/results", exist_ok=True)
    path = f"{root}/bench/results/instructions-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.md"
    with open(path, "w") as f:
        f.write(text)
    print(text, end="")
    log(f"Written to {path}")
    if env.get("UPDATE") == "1":
        shutil.copy(path, f"{root}/bench/instructions.md")
        log("and to bench/instructions.md")
