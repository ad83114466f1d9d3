"""Unit tests of the harness's pure parts: what it reads from wrk's and h2load's output,
the client command lines built from bench/scenarios.toml, and the report's tables.
No process is started and no socket opened. Run by scripts/test:

    python3 -m unittest discover -s bench/harness -p 'test_*.py'
"""

import os
import sys
import tempfile
import tomllib
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import clients  # noqa: E402
import report  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WRK = """Running 5s test @ http://127.0.0.1:18123/small
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms  410.12us  12.30ms   90.12%
    Req/Sec    48.12k     2.01k   51.20k    78.00%
  Latency Distribution
     50%  860.00us
     75%    1.10ms
     90%    1.50ms
     99%    2.46ms
  239012 requests in 5.00s, 38.06MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:  47802.40
Transfer/sec:      7.61MB
"""

H2LOAD = """starting benchmark...
Application protocol: h2c

finished in 4.00s, 63977.75 req/s, 2.54MB/s
requests: 255911 total, 255911 started, 255900 done, 255890 succeeded, 10 failed, 0 errored, 0 timeout
status codes: 255880 2xx, 0 3xx, 4 4xx, 6 5xx
traffic: 10.15MB (10645393) total, 2.44MB (2559110) headers (space savings 95.24%), 5.37MB (5629842) data
"""


def write(dirname, name, text):
    path = os.path.join(dirname, name)
    with open(path, "w") as f:
        f.write(text)
    return path


class Parsers(unittest.TestCase):
    def test_wrk_rate_percentiles_and_errors(self):
        with tempfile.TemporaryDirectory() as d:
            rps, p50, p99, errs = clients.parse_wrk(write(d, "out", WRK))
        self.assertEqual(rps, 47802.40)
        self.assertAlmostEqual(p50, 0.86)
        self.assertAlmostEqual(p99, 2.46)
        self.assertEqual(errs, [("read", 3), ("timeout", 2), ("non2xx", 7)])

    def test_wrk_that_printed_nothing_failed(self):
        with tempfile.TemporaryDirectory() as d:
            rps, p50, p99, errs = clients.parse_wrk(write(d, "out", "unable to connect\n"))
        self.assertEqual((rps, p50, p99), (0.0, -1.0, -1.0))
        self.assertEqual(errs, [("wrk_failed", 1)])

    def test_h2load_rate_failures_and_percentiles_from_its_log(self):
        with tempfile.TemporaryDirectory() as d:
            out = write(d, "out", H2LOAD)
            # start time, status, microseconds: 100 requests of 1..100 ms, and one that
            # got no response (status 0), left out of the percentiles
            lines = [f"0\t200\t{i * 1000}\n" for i in range(1, 101)] + ["0\t0\t999999999\n"]
            write(d, "out.log", "".join(lines))
            rps, p50, p99, errs = clients.parse_h2load(out, "h2c")
            self.assertEqual(rps, 63977.75)
            self.assertEqual((p50, p99), (50.0, 99.0))
            self.assertEqual(errs, [("failed", 10), ("non2xx", 10)])
            _, _, _, errs = clients.parse_h2load(out, "h2")
            self.assertIn(("not_h2", 1), errs)


class Scenarios(unittest.TestCase):
    def setUp(self):
        with open(f"{ROOT}/bench/scenarios.toml", "rb") as f:
            self.suites = tomllib.load(f)

    def scenario(self, suite, name):
        return next(s for s in self.suites[suite]["scenario"] if s["name"] == name)

    def test_every_suite_names_its_script_and_mode(self):
        for name, suite in self.suites.items():
            self.assertEqual(suite["script"], f"bench/{name}")
            self.assertIn(suite["mode"], ("http", "tls", "tcp", "instructions"))
            names = [s["name"] for s in suite["scenario"]]
            self.assertEqual(len(names), len(set(names)), name)

    def test_client_commands_are_the_ones_the_scripts_ran(self):
        ports = {"plain": 1, "tls": 2, "h2c": 3}
        argv, env = clients.load_command(self.scenario("compare", "close"), ports, 5, "L")
        self.assertEqual(argv, ["wrk", "-t1", "-c50", "-d5s", "--latency", "-H", "Connection: close",
                                "http://127.0.0.1:1/small"])
        self.assertEqual(env, {})
        argv, env = clients.load_command(self.scenario("tls", "handshakes"), ports, 4, "L", "shim.so")
        self.assertEqual(argv[-1], "https://127.0.0.1:2/small")
        self.assertEqual(env["BENCH_TLS_FRESH"], "1")
        argv, _ = clients.load_command(self.scenario("tls", "h2-tls"), ports, 4, "L")
        self.assertEqual(argv, ["h2load", "-t1", "-c10", "-m10", "-D", "4", "--log-file=L",
                                "--connect-to=127.0.0.1:2", "https://bench.test:2/small"])
        argv, _ = clients.load_command(self.scenario("tls", "h2c"), ports, 4, "L")
        self.assertEqual(argv[-1], "http://127.0.0.1:3/small")


class Table(unittest.TestCase):
    def test_medians_ratios_and_problems(self):
        class Opts:
            bg_limit = 10

        class Machine:
            proxy_pin = ["taskset", "-c", "0"]

        class H:
            suite = {"mode": "http", "targets": ["baseline", "fulcrum", "haproxy"]}
            targets = ["baseline", "fulcrum", "haproxy"]
            opts = Opts()
            machine = Machine()
            runs = []

        def run(target, rps, cpu, errors=(), others=0, kernel=75):
            return dict(scenario="keepalive", target=target, round=1, rps=rps, p50=1.0, p99=2.0, hwm=10240,
                        cpu=cpu, kernel=kernel if cpu >= 0 else -1, errors=list(errors), bg=0, busy_p=90,
                        busy_c=99, others=others, steal=0, closed=-1, resumed=-1)

        H.runs = [run("baseline", 100000, -1), run("fulcrum", 50000, 50.0), run("fulcrum", 40000, 40.0),
                  run("fulcrum", 60000, 60.0), run("haproxy", 50000, 100.0, [("read", 2)], others=20, kernel=50)]
        text = report.table(H(), {"name": "keepalive"})
        self.assertIn("| baseline (no proxy) | 100000 | 0.0% | 1.00 |", text)
        # req/s median 50000, spread (60000-40000)/50000, us/req median 10.0
        self.assertIn("| fulcrum | 50000 | 40.0% | 0.50 | 1.000 | 2.000 | 50% | 10.0 | 75% | 10.0 MB | 99% | none |",
                      text)
        self.assertIn("| haproxy (!) | 50000 |", text)
        self.assertIn("read=2, other-load x1 |", text)
        self.assertIn("Fulcrum/HAProxy req/s: **1.00x**", text)
        self.assertIn("Fulcrum/HAProxy **0.50x**", text)
        # user space: Fulcrum 10.0 us x 25% = 2.5, HAProxy 20.0 us x 50% = 10.0
        self.assertIn("of which in user space (us/req x (100% - in kernel)): Fulcrum/HAProxy **0.25x**", text)


if __name__ == "__main__":
    unittest.main()
