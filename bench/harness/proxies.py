"""The proxies under test, configured alike: one config writer per proxy and mode.

Modes (a suite's `mode` in bench/scenarios.toml):
  http  an HTTP/1.1 proxy on one plain listener, keep-alive to the backends
  tls   a TLS listener (TLS 1.2 + 1.3, ALPN h2,http/1.1) and a clear-text HTTP/2 listener
  tcp   a layer 4 relay: one backend connection per client connection
Every proxy gets ONE worker thread and round robin over the same two NGINX backends.
The `baseline` / `direct` target is no proxy at all: the client talks to backend 1.
bench/compare's options (FULCRUM_ROUTES, ACCESS_LOG, POLICY, STATE) are written here too.
"""

import os

from machine import Fatal, cmd_exists, sh

NO_PROXY = ("baseline", "direct")


class Target:
    """A started target: its listeners (name -> port), the process group to stop, the
    process whose CPU and memory are measured, and its log file."""

    def __init__(self, ports, pid=None, measure_pid=None, log=None, errlog=None):
        self.ports, self.pid, self.measure_pid, self.log, self.errlog = ports, pid, measure_pid, log, errlog


def nginx_backend_conf(work, n, port, h2=False):
    return f"""worker_processes 1;
daemon off;
pid {work}/backend{n}.pid;
error_log {work}/backend{n}-error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    keepalive_timeout 65s;
    client_body_temp_path {work}/tmp/backend{n}-body;
    server {{
        listen 127.0.0.1:{port}{" http2" if h2 else ""} backlog=4096;
        location = /small {{ default_type text/plain; return 200 "hello from backend {n}\\n"; }}
        location = /1m {{ root {work}/www; default_type application/octet-stream; }}
    }}
}}
"""


def nginx_e_args(work):
    """`-e FILE` where this nginx has it (startup errors go there, not to /var/log)."""
    return ["-e", f"{work}/nginx-startup.log"] if "-e filename" in sh(["nginx", "-h"]) else []


def find_stream_module():
    """NGINX's stream module: "" when built in, a load_module line for Debian's dynamic
    module (libnginx-mod-stream), None when neither."""
    if not cmd_exists("nginx"):
        return None
    v = sh(["nginx", "-V"]).split()
    if "--with-stream" in v:
        return ""
    dirs = [x.split("=", 1)[1] for x in v if x.startswith("--modules-path=")]
    for d in dirs + ["/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/usr/lib64/nginx/modules",
                     "/etc/nginx/modules"]:
        if os.path.isfile(f"{d}/ngx_stream_module.so"):
            return f"load_module {d}/ngx_stream_module.so;"
    return None


class Proxies:
    """Writes configs and starts targets for one suite."""

    def __init__(self, h):
        self.h = h  # the Harness: machine, work dir, backends, options

    def start(self, name, rid, extra_env=None):
        """Starts a fresh `name`; returns a Target (ports filled) even when it failed to
        come up (pid None then means "no proxy")."""
        h, m = self.h, self.h.machine
        if name in NO_PROXY:
            return Target({"plain": h.backend_ports[0]})
        mode = h.suite["mode"]
        ports = {"plain": m.free_port()} if mode != "tls" else {"tls": m.free_port(), "h2c": m.free_port()}
        logf = f"{h.work}/{rid}.log"
        cmd = self.command(name, rid, ports)
        pid = m.start(logf, m.proxy_pin + cmd, env=extra_env)
        measure = pid
        t = Target(ports, pid, measure, logf, f"{h.work}/{rid}-error.log")
        return t

    def command(self, name, rid, ports):
        h = self.h
        mode = h.suite["mode"]
        base = name.split("-")[0]
        write = {"fulcrum": self.fulcrum, "haproxy": self.haproxy, "nginx": self.nginx}.get(base)
        if write is None:
            raise Fatal(f"unknown target '{name}'")
        return write(name, rid, ports, mode)

    # ------------------------------------------------------------ fulcrum
    def fulcrum(self, name, rid, ports, mode):
        h = self.h
        b1, b2 = h.backends
        binary = h.fulcrum_base if name == "fulcrum-base" else h.fulcrum
        o = h.opts
        # fulcrum-base (an earlier build) runs `serve` unless its backends speak HTTP/2.
        serve = not o.fulcrum_needs_config() or (name == "fulcrum-base" and not o.h2_backends)
        if mode == "http" and serve:
            return [binary, "serve", "--listen", f"127.0.0.1:{ports['plain']}", "--backend", b1, "--backend", b2,
                    "--algorithm", "round_robin", "--threads", "1"]
        path = f"{h.work}/{rid}.toml"
        with open(path, "w") as f:
            f.write(self.fulcrum_toml(name, rid, ports, mode))
        return [binary, "run", "-c", path]

    def fulcrum_toml(self, name, rid, ports, mode):
        h, o = self.h, self.h.opts
        b1, b2 = h.backends
        version = 'http_version = "2"\n' if o.h2_backends else ""
        pool = (f'[pools.app]\nalgorithm = "round_robin"\n{version}'
                f'backends = [{{ address = "{b1}" }}, {{ address = "{b2}" }}]\n')
        head = "threads = 1\n"
        if mode == "tls":
            return (f'{head}access_log = false\n\n[[listeners]]\nname = "tls"\nbind = "127.0.0.1:{ports["tls"]}"\n'
                    f'pool = "app"\ntls = {{ certificates = [{{ cert = "{h.cert}", key = "{h.key}" }}] }}\n\n'
                    f'[[listeners]]\nname = "h2c"\nbind = "127.0.0.1:{ports["h2c"]}"\npool = "app"\n\n{pool}')
        if mode == "tcp":
            splice = "true" if name == "fulcrum-splice" else "false"
            return (f'{head}access_log = false\n\n[[listeners]]\nname = "l4"\nbind = "127.0.0.1:{ports["plain"]}"\n'
                    f'protocol = "tcp"\npool = "app"\nsplice = {splice}\n\n{pool}')
        out = [head.rstrip()]
        if o.access_log:
            out.append(f'[access_log]\npath = "{h.work}/{rid}-access.log"\n[admin]\nbind = "127.0.0.1:{h.machine.free_port()}"')
        else:
            out.append("access_log = false")
        if o.policy:
            out.append('[rate_limits.per-ip]\nrate = "1000000/s"\nburst = 1000000')
        if o.state:
            out.append('[rate_limits.state]\nrate = "1000000/s"\nburst = 1000000')
        if o.state == "shared":
            out.append(f'[shared]\nredis = "redis://127.0.0.1:{h.redis_port}"\nprefix = "{rid}"')
        out.append(f'[[listeners]]\nbind = "127.0.0.1:{ports["plain"]}"')
        limits = (['"per-ip"'] if o.policy else []) + (['"state"'] if o.state else [])
        if limits:
            out.append(f"rate_limits = [{', '.join(limits)}]")
        if o.policy:
            out.append("deny = [" + "".join(f'"{c}",' for c in h.deny_list) + "]")
        if o.routes == 0:
            out.append('pool = "app"')
        for r in range(1, o.routes):
            out.append(f'[[listeners.routes]]\nhost = "svc{r}.example.com"\npool = "app"')
        if o.routes > 0:
            out.append('[[listeners.routes]]\npath_prefix = "/"\npool = "app"')
        out.append(pool.rstrip())
        if o.state:
            out.append('[pools.app.sticky]\nmode = "table"\non = "source_ip"\nexpire = "10m"\nsize = 100000')
        return "\n".join(out) + "\n"

    # ------------------------------------------------------------ haproxy
    def haproxy(self, name, rid, ports, mode):
        h, o = self.h, self.h.opts
        b1, b2 = h.backends
        maxconn = h.haproxy_maxconn or 4096
        glob = ["    nbthread 1", f"    maxconn {maxconn}"]
        defaults, fe, be, tail, args = [], [], [], [], []
        if mode == "tcp":
            if name == "haproxy-splice":
                defaults.append("    option splice-auto")
            defaults += ["    mode tcp"]
            fe.append(f"    bind 127.0.0.1:{ports['plain']}")
        else:
            defaults += ["    mode http", "    option http-keep-alive", "    http-reuse always"]
            defer = " defer-accept" if o.defer_accept else ""
            if mode == "tls":
                fe += [f"    bind 127.0.0.1:{ports['tls']}{defer} ssl crt {h.combined} alpn h2,http/1.1"
                       " ssl-min-ver TLSv1.2",
                       f"    bind 127.0.0.1:{ports['h2c']}{defer} proto h2"]
            else:
                fe.append(f"    bind 127.0.0.1:{ports['plain']}{defer}")
        if mode == "http":
            if o.policy:
                fe += ["    stick-table type ip size 100k expire 10s store http_req_rate(1s)",
                       f"    tcp-request connection reject if {{ src -f {h.work}/deny.lst }}",
                       "    http-request track-sc0 src",
                       "    http-request deny deny_status 429 if { sc_http_req_rate(0) gt 1000000 }"]
            if o.state:
                table = "    stick-table type ip size 100k expire 10m store http_req_rate(1s)"
                if o.state == "shared":
                    p1, p2 = h.machine.free_port(), h.machine.free_port()
                    tail += ["peers fleet", f"    peer local 127.0.0.1:{p1}", f"    peer other 127.0.0.1:{p2}"]
                    table += " peers fleet"
                    args = ["-L", "local"]
                be += [table, "    stick on src", "    http-request track-sc1 src",
                       "    http-request deny deny_status 429 if { sc_http_req_rate(1) gt 1000000 }"]
            if o.access_log:
                glob.append("    log stdout format raw daemon")
                defaults = ["    log global", "    option httplog"] + defaults
                tail = ["frontend stats", f"    bind 127.0.0.1:{h.machine.free_port()}", "    stats enable",
                        "    stats uri /stats"] + tail
        proto = " proto h2" if o.h2_backends else ""
        cfg = "\n".join(
            ["global"] + glob + ["defaults"] + defaults +
            ["    timeout connect 5s", "    timeout client 60s", "    timeout server 60s", f"    maxconn {maxconn}",
             "frontend fe"] + fe + ["    default_backend be", "backend be", "    balance roundrobin"] + be +
            [f"    server b1 {b1}{proto}", f"    server b2 {b2}{proto}"] + tail) + "\n"
        path = f"{h.work}/{rid}.cfg"
        with open(path, "w") as f:
            f.write(cfg)
        return ["haproxy", "-db"] + args + ["-f", path]

    # ------------------------------------------------------------ nginx
    def nginx(self, name, rid, ports, mode):
        h, o = self.h, self.h.opts
        b1, b2 = h.backends
        w = h.work
        head = (f"worker_processes 1;\ndaemon off;\npid {w}/{rid}.pid;\nerror_log {w}/{rid}-error.log warn;\n"
                f"events {{ worker_connections 16384; }}\n")
        if mode == "tcp":
            conf = (f"{h.stream_load or ''}\n{head}stream {{\n    access_log off;\n    upstream be {{\n"
                    f"        server {b1};\n        server {b2};\n    }}\n    server {{\n"
                    f"        listen 127.0.0.1:{ports['plain']} backlog=4096;\n        proxy_pass be;\n"
                    f"        proxy_connect_timeout 5s;\n        proxy_timeout 60s;\n    }}\n}}\n")
        else:
            log, zones, policy, hash_, stats = "access_log off;", [], [], "", ""
            if mode == "http":
                if o.state:
                    hash_ = "hash $remote_addr consistent;"
                    zones.append("limit_req_zone $binary_remote_addr zone=state:10m rate=1000000r/s;")
                if o.policy:
                    zones.append("limit_req_zone $binary_remote_addr zone=perip:10m rate=1000000r/s;")
                    policy.append(f"limit_req zone=perip burst=1000000 nodelay; include {w}/deny-nginx.conf;")
                if o.state:
                    policy.append("limit_req zone=state burst=1000000 nodelay;")
                if o.access_log:
                    log = f"access_log {w}/{rid}-access.log;"
                    stats = f"server {{ listen 127.0.0.1:{h.machine.free_port()}; location = /status {{ stub_status; }} }}"
            defer = " deferred" if o.defer_accept else ""
            if mode == "tls":
                listen = (f"        listen 127.0.0.1:{ports['tls']} ssl http2 backlog=4096{defer};\n"
                          f"        listen 127.0.0.1:{ports['h2c']} http2 backlog=4096{defer};\n"
                          f"        ssl_certificate {h.cert};\n        ssl_certificate_key {h.key};\n"
                          f"        ssl_protocols TLSv1.2 TLSv1.3;\n")
                # For HTTP/2 keepalive_requests is the number of requests per connection:
                # with the default NGINX sends GOAWAY after 1000, and h2load does not reconnect.
                kreq = 10000000
            else:
                listen = f"        listen 127.0.0.1:{ports['plain']} backlog=4096{defer};\n"
                kreq = 100000
            zl = "".join(f"    {z}\n" for z in zones)
            conf = (f"{head}http {{\n    {log}\n{zl}    keepalive_requests {kreq};\n"
                    f"    client_body_temp_path {w}/tmp/{rid}-body;\n    proxy_temp_path {w}/tmp/{rid}-proxy;\n"
                    f"    upstream be {{\n        {hash_}\n        server {b1};\n        server {b2};\n"
                    f"        keepalive 64;\n        keepalive_requests 100000;\n    }}\n    server {{\n{listen}"
                    f"        location / {{\n            {' '.join(policy)}\n            proxy_pass http://be;\n"
                    f"            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n"
                    f"        }}\n    }}\n    {stats}\n}}\n")
        path = f"{w}/{rid}.conf"
        with open(path, "w") as f:
            f.write(conf)
        return ["nginx"] + h.nginx_e + ["-p", w, "-c", path]
