#!/usr/bin/env python3
"""Run the Autobahn WebSocket fuzzing client against a URL and record per-case results.

Usage:
    python3 tests/peers/autobahn.py URL OUTDIR [--cases '1.*,2.*,9.1.*']
                                    [--exclude '12.*,13.*'] [--engine kosoku|wstest]
                                    [--parallelism 1] [--timeout 900]
                                    [--compare BASELINE_OUTDIR]

URL is the server under test, e.g. ws://127.0.0.1:PORT/path (a ws_echo.py
directly, or Fulcrum in front of one). Cases are Autobahn case ids or globs,
comma separated (default: the whole suite, 517 cases; 12.* and 13.*, the
permessage-deflate cases, take ~10 minutes of the ~11 on a 2-core machine).

Engines:
  kosoku  (default) the `kosoku` package (PyPI, Python >= 3.10): a Rust runner
          that executes Autobahn|Testsuite's own case files; pinned in
          requirements.txt.
  wstest  the original autobahntestsuite 0.8.2 `wstest -m fuzzingclient`, which
          is Python 2 only. Needs a CPython 2.7 (FULCRUM_PYTHON2, python2.7 on
          PATH, or pyenv's ~/.pyenv/versions/2.7.*); on first use it installs
          requirements-wstest-py2.txt with that interpreter's pip into
          --wstest-home (default /tmp/fulcrum-wstest-py27).

Writes:
  OUTDIR/report/          the engine's own Autobahn report (index.json, per-case
                          JSON and HTML)
  OUTDIR/results.json     {"engine":..,"url":..,"agent":..,"elapsed_ms":..,
                           "cases":{"1.1.1":{"behavior":"OK","behaviorClose":"OK",
                           "remoteCloseCode":1000,"duration":3},...}}
Prints one JSON line (compact separators):
  {"ok":true,"engine":"kosoku","cases":301,"counts":{"OK":290,...},
   "not_passed":["7.1.5"],"elapsed_ms":20480,"compare":null,"error":null}
"not_passed" lists cases whose behavior is FAILED/UNIMPLEMENTED/ERROR or whose
behaviorClose is not OK/INFORMATIONAL (the echo server itself has some, e.g.
websockets answers 7.1.5 with 1002: compare against a direct run instead of
expecting none).
With --compare DIR, each case is compared with DIR/results.json (a run made
directly against the echo server): --compare-mode verdict (default) compares
whether the case passed and remoteCloseCode; strict compares behavior,
behaviorClose and remoteCloseCode. (Strict is too strict through any proxy:
e.g. case 3.3 is NON-STRICT directly against websockets but OK through
nginx, because whether the echo of the first frame goes out before the
connection is failed depends on how the frames were split into reads.)
Durations are never compared. "compare" is {"baseline":DIR,"mode":..,
"identical":bool,"n_diffs":N,"diffs":[{"case":..,"baseline":..,"this":..}]}
(first 50) and "ok" requires identical results.
Exit status: 0 if the run produced a result for every case (and, with
--compare, the results are identical); 1 otherwise; 2 for usage errors or a
missing engine.
"""

import argparse
import asyncio
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PASS_BEHAVIOR = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASS_CLOSE = {"OK", "INFORMATIONAL"}
COMPARE_FIELDS = ("behavior", "behaviorClose", "remoteCloseCode")


def split_list(s):
    return [x.strip() for x in (s or "").split(",") if x.strip()]


def read_index(report_dir):
    """Autobahn index.json: {agent: {case: {...}}} -> (agent, {case: {...}})."""
    with open(os.path.join(report_dir, "index.json")) as f:
        idx = json.load(f)
    if not idx:
        return None, {}
    agent = next(iter(idx))
    cases = {}
    for cid, v in idx[agent].items():
        cases[cid] = {
            "behavior": v.get("behavior"),
            "behaviorClose": v.get("behaviorClose"),
            "remoteCloseCode": v.get("remoteCloseCode"),
            "duration": v.get("duration"),
        }
    return agent, cases


def passed(v):
    return v["behavior"] in PASS_BEHAVIOR and v["behaviorClose"] in PASS_CLOSE


def view(v, mode):
    """What --compare looks at for one case."""
    if v is None:
        return None
    if mode == "strict":
        return {k: v.get(k) for k in COMPARE_FIELDS}
    # verdict: pass/fail and the close code. OK vs NON-STRICT depends on how
    # the frames were split into TCP reads (3.x/4.x fail-fast cases), which an
    # intermediary legitimately changes.
    return {"passed": passed(v), "remoteCloseCode": v.get("remoteCloseCode")}


def case_key(cid):
    return tuple(int(p) if p.isdigit() else p for p in cid.split("."))


# ---------------------------------------------------------------- kosoku
def run_kosoku(args, report_dir):
    try:
        import kosoku
        from kosoku._report import write_reports
    except ImportError as e:
        raise EngineMissing(f"kosoku not importable ({e}); pip install -r {HERE}/requirements.txt")

    async def go():
        try:
            return await kosoku.run_fuzzingclient(
                args.url, split_list(args.cases) or None, split_list(args.exclude) or None,
                concurrency=args.parallelism,
            )
        except kosoku.FailureError as failure:  # some case did not pass: still results
            return failure.results

    results = asyncio.run(asyncio.wait_for(go(), args.timeout))
    if results:
        write_reports(results, report_dir, produce_html=not args.no_html)
    return len(results)


# ---------------------------------------------------------------- wstest
class EngineMissing(Exception):
    pass


def find_python2():
    cands = [os.environ.get("FULCRUM_PYTHON2"), shutil.which("python2.7"), shutil.which("python2")]
    roots = [os.environ.get("PYENV_ROOT"), os.path.expanduser("~/.pyenv"), "/root/.pyenv"]
    for r in roots:
        if r:
            cands += sorted(glob.glob(os.path.join(r, "versions", "2.7*", "bin", "python")), reverse=True)
    for c in cands:
        if not c or not os.path.exists(c):
            continue
        try:  # pyenv shims exist on PATH even when that version isn't active
            out = subprocess.run([c, "-c", "import sys; print(sys.version_info[:2] == (2, 7))"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == b"True":
            return c
    return None


WSTEST_LAUNCH = (
    "import site, sys; site.addsitedir(sys.argv[1]); sys.argv = ['wstest'] + sys.argv[2:]; "
    "from autobahntestsuite.wstest import run; run()"
)


def ensure_wstest(py2, home):
    marker = os.path.join(home, ".installed")
    if os.path.exists(marker):
        return
    req = os.path.join(HERE, "requirements-wstest-py2.txt")
    cmd = [py2, "-m", "pip", "install", "--disable-pip-version-check", "--no-warn-script-location",
           "--target", home, "-r", req]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
    if p.returncode != 0:
        raise EngineMissing("installing wstest failed:\n" + p.stdout.decode(errors="replace")[-3000:])
    open(marker, "w").close()


def run_wstest(args, report_dir):
    py2 = find_python2()
    if not py2:
        raise EngineMissing("no CPython 2.7 found (set FULCRUM_PYTHON2); wstest is Python 2 only")
    ensure_wstest(py2, args.wstest_home)
    spec = {
        "outdir": report_dir,
        "servers": [{"agent": "under-test", "url": args.url}],
        "cases": split_list(args.cases) or ["*"],
        "exclude-cases": split_list(args.exclude),
        "exclude-agent-cases": {},
    }
    spec_path = os.path.join(os.path.dirname(report_dir), "wstest-spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f, indent=1)
    log_path = os.path.join(os.path.dirname(report_dir), "wstest.log")
    with open(log_path, "wb") as log:
        p = subprocess.Popen(
            [py2, "-c", WSTEST_LAUNCH, args.wstest_home, "-m", "fuzzingclient", "-s", spec_path],
            stdout=log, stderr=subprocess.STDOUT, cwd=os.path.dirname(report_dir),
            start_new_session=True,
        )
        try:
            rc = p.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            raise asyncio.TimeoutError()
    if rc != 0:
        raise RuntimeError(f"wstest exited {rc}; see {log_path}")
    return None


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("outdir")
    ap.add_argument("--cases", default="", help="comma separated case ids/globs (default: all)")
    ap.add_argument("--exclude", default="", help="comma separated case ids/globs to skip")
    ap.add_argument("--engine", choices=["kosoku", "wstest"], default="kosoku")
    ap.add_argument("--parallelism", type=int, default=1, help="kosoku only: cases in parallel")
    ap.add_argument("--timeout", type=float, default=900.0, help="overall limit, seconds")
    ap.add_argument("--compare", default=None, metavar="BASELINE_OUTDIR")
    ap.add_argument("--compare-mode", choices=["verdict", "strict"], default="verdict")
    ap.add_argument("--no-html", action="store_true", help="kosoku: JSON reports only")
    ap.add_argument("--wstest-home", default="/tmp/fulcrum-wstest-py27")
    args = ap.parse_args()

    os.makedirs(args.outdir, exist_ok=True)
    report_dir = os.path.abspath(os.path.join(args.outdir, "report"))
    shutil.rmtree(report_dir, ignore_errors=True)
    os.makedirs(report_dir)

    summary = {"ok": False, "engine": args.engine, "url": args.url, "cases": 0, "counts": {},
               "not_passed": [], "elapsed_ms": None, "compare": None, "error": None}
    started = time.monotonic()
    code = 1
    try:
        (run_kosoku if args.engine == "kosoku" else run_wstest)(args, report_dir)
        agent, cases = read_index(report_dir)
        elapsed = round((time.monotonic() - started) * 1000)
        results = {"engine": args.engine, "url": args.url, "agent": agent, "elapsed_ms": elapsed,
                   "cases": dict(sorted(cases.items(), key=lambda kv: case_key(kv[0])))}
        with open(os.path.join(args.outdir, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        counts = {}
        for v in cases.values():
            counts[v["behavior"]] = counts.get(v["behavior"], 0) + 1
        summary["cases"] = len(cases)
        summary["counts"] = counts
        summary["not_passed"] = sorted(
            (c for c, v in cases.items()
             if not passed(v)),
            key=case_key)
        ok = len(cases) > 0
        if not ok:
            summary["error"] = "no case results"
        if args.compare:
            with open(os.path.join(args.compare, "results.json")) as f:
                base = json.load(f)["cases"]
            diffs = []
            for cid in sorted(set(base) | set(cases), key=case_key):
                b = view(base.get(cid), args.compare_mode)
                t = view(cases.get(cid), args.compare_mode)
                if b != t:
                    diffs.append({"case": cid, "baseline": b, "this": t})
            summary["compare"] = {"baseline": args.compare, "mode": args.compare_mode,
                                  "identical": not diffs,
                                  "diffs": diffs[:50], "n_diffs": len(diffs)}
            if diffs:
                ok = False
                summary["error"] = f"{len(diffs)} cases differ from the baseline"
        summary["ok"] = ok
        code = 0 if ok else 1
    except EngineMissing as e:
        summary["error"] = str(e)
        code = 2
    except asyncio.TimeoutError:
        summary["error"] = f"timed out after {args.timeout}s"
    except Exception as e:
        summary["error"] = f"{type(e).__name__}: {e}"
    summary["elapsed_ms"] = round((time.monotonic() - started) * 1000)
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    if code:
        print(f"autobahn: FAILED: {summary['error']}", file=sys.stderr, flush=True)
    sys.stderr.flush()
    # kosoku's native runtime has been seen to abort() during interpreter
    # teardown; everything is written, so skip the teardown.
    os._exit(code)


if __name__ == "__main__":
    main()
