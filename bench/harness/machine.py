"""The machine side of a benchmark: packages, processes, CPU pinning, ports, and the
/proc readings every measurement is made of.

Every process the harness starts goes through `Machine.start`: it runs in its own
session (so its whole process group can be stopped), its output goes to a log file,
and it is stopped when the harness exits, however it exits. Nothing here knows about
proxies or scenarios.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


class Fatal(Exception):
    """A reason to stop the whole benchmark (printed as `bench/NAME: error: ...`)."""


def install_missing(needed):
    """needed: {command: [debian packages]}. Installs (apt-get) what is missing."""
    pkgs = []
    for cmd, p in needed.items():
        if not cmd_exists(cmd):
            pkgs += [x for x in p if x not in pkgs]
    if not pkgs:
        return
    log("==> installing: " + " ".join(pkgs))
    sudo = []
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            raise Fatal("need root (or sudo) to install: " + " ".join(pkgs))
        sudo = ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # apt's output goes to stderr: standard output is for the tables.
    subprocess.run(sudo + ["apt-get", "update"], stdout=sys.stderr, check=True)
    subprocess.run(sudo + ["apt-get", "install", "-y"] + pkgs, stdout=sys.stderr, env=env, check=True)
    # A fresh install may start the distribution's own service: stop it, it could steal CPU.
    for svc in ("nginx", "haproxy", "redis-server"):
        if svc in pkgs and shutil.which("service"):
            subprocess.run(sudo + ["service", svc, "stop"], capture_output=True)


def cmd_exists(cmd):
    return shutil.which(cmd) is not None or (cmd.startswith("/") and os.path.exists(cmd))


def sh(cmd, timeout=30, input=None):
    """Runs a short command; returns its stdout (stderr merged) as text, never raises."""
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=None if input is not None else subprocess.DEVNULL, input=input, timeout=timeout)
        return r.stdout.decode("utf-8", "replace").replace("\0", "")
    except (OSError, subprocess.TimeoutExpired):
        return ""


class Machine:
    """Processes started, CPU pinning and port allocation for one benchmark run."""

    def __init__(self, work, pin, proxy_cpu, client_cpu, client_desc):
        self.work = work
        self.procs = {}
        self.used_ports = set()
        self.ncpu = os.cpu_count() or 1
        self.proxy_pin, self.client_pin = [], []
        if pin != "1":
            self.pin_desc = "none (PIN=0)"
        elif self.ncpu >= 2 and shutil.which("taskset") and all(
                subprocess.run(["taskset", "-c", str(c), "true"], capture_output=True).returncode == 0
                for c in (proxy_cpu, client_cpu)):
            self.proxy_pin = ["taskset", "-c", str(proxy_cpu)]
            self.client_pin = ["taskset", "-c", str(client_cpu)]
            self.pin_desc = f"proxy on CPU {proxy_cpu}; {client_desc} on CPU {client_cpu}"
        else:
            self.pin_desc = "none (fewer than 2 usable CPUs or taskset failed)"
        self.cpu_p = f"cpu{proxy_cpu}" if self.proxy_pin else "cpu"
        self.cpu_c = f"cpu{client_cpu}" if self.proxy_pin else "cpu"
        self.my_pgrp = os.getpgrp()
        self.clk_tck = os.sysconf("SC_CLK_TCK")

    # ------------------------------------------------------------ processes
    def start(self, logfile, cmd, env=None):
        """Starts cmd in its own session, output to logfile; returns its pid."""
        with open(logfile, "wb") as out:
            p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, env=env)
        self.procs[p.pid] = p
        return p.pid

    def alive(self, pid):
        p = self.procs.get(pid)
        if p is not None:
            return p.poll() is None
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False

    def stop(self, pid):
        """SIGTERM to the process group, SIGKILL after 5 s."""
        for sig in (signal.SIGTERM,):
            try:
                os.killpg(pid, sig)
            except OSError:
                pass
        p = self.procs.pop(pid, None)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except OSError:
                break
            if p is not None:
                p.poll()
            time.sleep(0.1)
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        if p is not None:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def stop_all(self):
        for pid in list(self.procs):
            self.stop(pid)

    def first_child(self, pid):
        """The first child of pid (NGINX's worker), or pid itself."""
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = f.read().split()
            if kids:
                return int(kids[0])
        except OSError:
            pass
        return pid

    # ------------------------------------------------------------ ports
    def free_port(self):
        """A port in 18000-19999 with no socket at all on it (not even TIME_WAIT),
        not handed out before in this run."""
        busy = set()
        for path in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(path) as f:
                    next(f)
                    for line in f:
                        busy.add(int(line.split()[1].rsplit(":", 1)[1], 16))
            except (OSError, StopIteration):
                pass
        for _ in range(500):
            p = 18000 + random.randrange(2000)
            if p not in self.used_ports and p not in busy:
                self.used_ports.add(p)
                return p
        raise Fatal("no free port found in 18000-19999")

    # ------------------------------------------------------------ readings
    def cpu_ticks(self, pid):
        """(utime, stime) of the whole process (all threads): in user space, in the kernel."""
        f = _stat_fields(pid)
        return (int(f[11]), int(f[12])) if f else (0, 0)

    def cpu_stat(self):
        """{cpuN: (busy, total, steal)} jiffies; "cpu" = all together (busy includes steal)."""
        out = {}
        with open("/proc/stat") as f:
            for line in f:
                if not line.startswith("cpu"):
                    break
                v = line.split()
                n = [int(x) for x in v[1:]]
                busy = n[0] + n[1] + n[2] + n[5] + n[6] + n[7]
                out[v[0]] = (busy, busy + n[3] + n[4], n[7])
        return out

    @staticmethod
    def busy_pct(s0, s1, cpu, steal=False):
        """% busy (or stolen) of cpu between two cpu_stat snapshots; -1 if unknown."""
        if cpu not in s0 or cpu not in s1 or s1[cpu][1] <= s0[cpu][1]:
            return -1
        k = 2 if steal else 0
        return round((s1[cpu][k] - s0[cpu][k]) / (s1[cpu][1] - s0[cpu][1]) * 100)

    def others_ticks(self):
        """CPU ticks (utime+stime+cutime+cstime) of every user-space process that is not
        ours (not in the harness's process group nor in a group it started). The
        difference between two calls is what the rest of the machine used in between."""
        ours = {self.my_pgrp} | set(self.procs)
        total = 0
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            f = _stat_fields(d)
            if not f or len(f) < 15 or int(f[2]) in ours or int(f[6]) & 0x200000:  # PF_KTHREAD
                continue
            total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
        return total

    def top_hogs(self):
        out = sh(["top", "-b", "-n1", "-w", "512"])
        hogs = []
        for line in out.splitlines()[7:]:
            v = line.split()
            try:
                if len(v) >= 12 and float(v[8]) >= 20:
                    hogs.append(f"{v[11]} {v[8]}%")
            except ValueError:
                pass
        return " ".join(hogs)


def _stat_fields(pid):
    """Fields of /proc/PID/stat after the command name (field 3 onwards)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rfind(")") + 2:].split()


def vm_kb(pid, key):
    """VmRSS / VmHWM of pid in kB (0 if unknown)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def raise_nofile(need=0):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        pass
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if need and soft < need:
        raise Fatal(f"needs ulimit -n >= {need} (hard limit {hard}); raise it or ask for fewer connections")


def read_text(path):
    """The file's text ("" if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except (OSError, TypeError):
        return ""


def tail(*paths, n=5):
    """The last n lines of each file, on one line."""
    return " ".join(" ".join(read_text(p).splitlines()[-n:]) for p in paths if p and read_text(p))
