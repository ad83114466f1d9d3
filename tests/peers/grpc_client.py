#!/usr/bin/env python3
"""gRPC client that checks every method of grpc_server.py, directly or through Fulcrum.

Usage:
    python3 tests/peers/grpc_client.py TARGET [--tls CA --authority NAME]
                                              [--checks a,b,...] [--unary-calls 10]
                                              [--channel-per-call] [--timeout 10]

TARGET is host:port. Uses raw-bytes stubs (no protoc) on one channel
(plaintext h2c by default; with --tls CA, TLS verified against the CA file,
with grpc.ssl_target_name_override = grpc.default_authority = NAME).
HTTP proxies from the environment are ignored (grpc.enable_http_proxy=0).

Checks (all by default; --checks selects a subset, comma separated):
  ready          channel becomes READY within --timeout
  unary          --unary-calls (10) calls of Unary b"ping-<i>"; each answer is
                 b"<server name>:ping-<i>" and carries trailing metadata
                 x-trailer == that name; reports names seen ("servers": counts)
  unary_large    Unary with a 3 MiB payload (flow control through a proxy)
  server_stream  ServerStream b"100": exactly 100 messages "0".."99", x-trailer
  client_stream  ClientStream of 100 chunks: concatenation, x-trailer
  bidi           BidiStream ping-pong of 50 messages (each echo awaited before
                 the next is sent, so a proxy that buffers the stream fails)
  fail           Fail: StatusCode.NOT_FOUND with details "nope"
  deadline       Sleep b"2000" with a 0.3 s timeout: DEADLINE_EXCEEDED within
                 1.0 s of the call starting (not a hang, not OK)

Prints one JSON line (compact separators), e.g.
  {"ok":true,"target":"127.0.0.1:5000","servers":{"a":5,"b":5},
   "checks":{"ready":{"pass":true,...},"unary":{"pass":true,...},...}}
Exit status 0 only if every selected check passed; 1 otherwise (failures
also summarised on stderr).
"""

import argparse
import json
import queue
import sys
import time

import grpc

ALL_CHECKS = ["ready", "unary", "unary_large", "server_stream", "client_stream", "bidi", "fail", "deadline"]


class CheckFailed(Exception):
    pass


def trailer_of(call):
    for k, v in call.trailing_metadata() or ():
        if k == "x-trailer":
            return v
    return None


def make_channel(args):
    options = [("grpc.enable_http_proxy", 0),
               ("grpc.max_receive_message_length", 16 * 1024 * 1024),
               ("grpc.max_send_message_length", 16 * 1024 * 1024)]
    if args.tls:
        with open(args.tls, "rb") as f:
            ca = f.read()
        if args.authority:
            options += [("grpc.ssl_target_name_override", args.authority),
                        ("grpc.default_authority", args.authority)]
        return grpc.secure_channel(args.target, grpc.ssl_channel_credentials(root_certificates=ca), options)
    if args.authority:
        options.append(("grpc.default_authority", args.authority))
    return grpc.insecure_channel(args.target, options)


def stubs(ch):
    m = "/fulcrum.Test/"
    return {
        "Unary": ch.unary_unary(m + "Unary"),
        "ServerStream": ch.unary_stream(m + "ServerStream"),
        "ClientStream": ch.stream_unary(m + "ClientStream"),
        "BidiStream": ch.stream_stream(m + "BidiStream"),
        "Sleep": ch.unary_unary(m + "Sleep"),
        "Fail": ch.unary_unary(m + "Fail"),
    }


def check_ready(ch, args, res):
    try:
        grpc.channel_ready_future(ch).result(timeout=args.timeout)
    except grpc.FutureTimeoutError:
        raise CheckFailed(f"channel not READY after {args.timeout}s")
    return {}


def unary_once(s, i, args):
    payload = b"ping-%d" % i
    resp, call = s["Unary"].with_call(payload, timeout=args.timeout)
    name, sep, rest = resp.partition(b":")
    if not sep or rest != payload:
        raise CheckFailed(f"call {i}: bad answer {resp[:80]!r}")
    name = name.decode()
    tr = trailer_of(call)
    if tr != name:
        raise CheckFailed(f"call {i}: x-trailer {tr!r} != server name {name!r}")
    return name


def check_unary(ch, args, res):
    counts = {}
    for i in range(args.unary_calls):
        if args.channel_per_call:
            c = make_channel(args)
            try:
                name = unary_once(stubs(c), i, args)
            finally:
                c.close()
        else:
            name = unary_once(stubs(ch), i, args)
        counts[name] = counts.get(name, 0) + 1
    res["servers"] = counts
    return {"calls": args.unary_calls, "servers": counts}


def check_unary_large(ch, args, res):
    payload = bytes(range(256)) * (3 * 1024 * 4)  # 3 MiB
    resp, call = stubs(ch)["Unary"].with_call(payload, timeout=args.timeout)
    name, _, rest = resp.partition(b":")
    if rest != payload:
        raise CheckFailed(f"3 MiB echo mismatch: got {len(rest)} bytes")
    if trailer_of(call) != name.decode():
        raise CheckFailed("x-trailer missing or wrong")
    return {"bytes": len(payload)}


def check_server_stream(ch, args, res):
    call = stubs(ch)["ServerStream"](b"100", timeout=args.timeout)
    msgs = [m for m in call]
    if msgs != [str(i).encode() for i in range(100)]:
        raise CheckFailed(f"got {len(msgs)} messages, first {msgs[:3]!r}")
    tr = trailer_of(call)
    if not tr:
        raise CheckFailed("x-trailer missing")
    return {"messages": len(msgs), "x_trailer": tr}


def check_client_stream(ch, args, res):
    chunks = [b"chunk-%03d;" % i for i in range(100)]
    resp, call = stubs(ch)["ClientStream"].with_call(iter(chunks), timeout=args.timeout)
    if resp != b"".join(chunks):
        raise CheckFailed(f"concatenation mismatch ({len(resp)} bytes)")
    tr = trailer_of(call)
    if not tr:
        raise CheckFailed("x-trailer missing")
    return {"messages": len(chunks), "bytes": len(resp), "x_trailer": tr}


def check_bidi(ch, args, res):
    n = 50
    outq = queue.Queue()
    DONE = object()

    def requests():
        while True:
            item = outq.get()
            if item is DONE:
                return
            yield item

    call = stubs(ch)["BidiStream"](requests(), timeout=args.timeout)
    got = 0
    try:
        outq.put(b"bidi-0")
        for resp in call:
            if resp != b"bidi-%d" % got:
                raise CheckFailed(f"echo {got}: got {resp[:40]!r}")
            got += 1
            outq.put(b"bidi-%d" % got if got < n else DONE)
    except grpc.RpcError as e:
        raise CheckFailed(f"after {got} echoes: {e.code()} {e.details()}")
    finally:
        outq.put(DONE)
    if got != n:
        raise CheckFailed(f"stream ended after {got} of {n} echoes")
    tr = trailer_of(call)
    if not tr:
        raise CheckFailed("x-trailer missing")
    return {"messages": got, "x_trailer": tr}


def check_fail(ch, args, res):
    try:
        stubs(ch)["Fail"](b"", timeout=args.timeout)
    except grpc.RpcError as e:
        code, details = e.code(), e.details()
        out = {"code": code.name if code else None, "details": details}
        if code != grpc.StatusCode.NOT_FOUND or details != "nope":
            raise CheckFailed(f"expected NOT_FOUND/'nope', got {out}")
        return out
    raise CheckFailed("Fail returned OK")


def check_deadline(ch, args, res):
    started = time.monotonic()
    try:
        stubs(ch)["Sleep"](b"2000", timeout=0.3)
    except grpc.RpcError as e:
        elapsed = time.monotonic() - started
        out = {"code": e.code().name if e.code() else None, "elapsed_ms": round(elapsed * 1000)}
        if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise CheckFailed(f"expected DEADLINE_EXCEEDED, got {out}")
        if elapsed > 1.0:
            raise CheckFailed(f"DEADLINE_EXCEEDED only after {elapsed:.3f}s")
        return out
    raise CheckFailed(f"Sleep 2000 with 0.3s timeout returned OK after {time.monotonic() - started:.3f}s")


CHECK_FUNCS = {
    "ready": check_ready,
    "unary": check_unary,
    "unary_large": check_unary_large,
    "server_stream": check_server_stream,
    "client_stream": check_client_stream,
    "bidi": check_bidi,
    "fail": check_fail,
    "deadline": check_deadline,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", help="host:port")
    ap.add_argument("--tls", metavar="CA", default=None, help="use TLS, trusting this CA PEM file")
    ap.add_argument("--authority", default=None, help="TLS name override and :authority")
    ap.add_argument("--checks", default=",".join(ALL_CHECKS))
    ap.add_argument("--unary-calls", type=int, default=10)
    ap.add_argument("--channel-per-call", action="store_true",
                    help="new channel (new connection) for each Unary call")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-call timeout, seconds")
    args = ap.parse_args()

    selected = [c.strip() for c in args.checks.split(",") if c.strip()]
    unknown = [c for c in selected if c not in CHECK_FUNCS]
    if unknown:
        ap.error(f"unknown checks {unknown}; known: {ALL_CHECKS}")

    res = {"ok": False, "target": args.target, "tls": bool(args.tls), "servers": {}, "checks": {}}
    started = time.monotonic()
    ch = make_channel(args)
    try:
        for name in selected:
            t0 = time.monotonic()
            try:
                out = CHECK_FUNCS[name](ch, args, res)
                entry = {"pass": True, **out}
            except CheckFailed as e:
                entry = {"pass": False, "error": str(e)}
            except grpc.RpcError as e:
                entry = {"pass": False, "error": f"{e.code()}: {e.details()}"}
            except Exception as e:
                entry = {"pass": False, "error": f"{type(e).__name__}: {e}"}
            entry["ms"] = round((time.monotonic() - t0) * 1000)
            res["checks"][name] = entry
            if name == "ready" and not entry["pass"]:
                break  # nothing else can work
    finally:
        ch.close()
    res["elapsed_ms"] = round((time.monotonic() - started) * 1000)
    res["ok"] = all(res["checks"].get(c, {}).get("pass") for c in selected)
    print(json.dumps(res, separators=(",", ":")), flush=True)
    if not res["ok"]:
        for c in selected:
            e = res["checks"].get(c)
            print(f"grpc_client: FAILED {c}: {e['error'] if e else 'not run'}", file=sys.stderr)
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
