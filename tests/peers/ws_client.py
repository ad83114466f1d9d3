#!/usr/bin/env python3
"""WebSocket client that exercises an echo server (ws_echo.py), directly or through Fulcrum.

Usage:
    python3 tests/peers/ws_client.py URL [--expect-path PATH] [--ca CAFILE | --insecure]
                                         [--header NAME:VALUE ...] [--subprotocol P]
                                         [--no-compression] [--timeout SECONDS]

URL is ws://host:port/path?query or wss://...  Steps, each bounded by
--timeout (default 10 s):
  1. opening handshake;
  2. send text "hello fulcrum \u00e9\u2603" and expect the same text back;
  3. send 1 MiB of random bytes as one binary message, expect them back;
  4. send a ping with payload, expect the matching pong;
  5. send "path?", expect the request path the server saw (default: the path
     and query of URL; override with --expect-path when the proxy rewrites);
  6. close with code 1000 and expect the server's close frame to carry 1000.

Prints exactly one JSON line on stdout (compact separators, so a test can
search for '"ok":true'), e.g.
  {"ok":true,"url":"ws://...","checks":{"handshake":true,"text":true,...},
   "path":"/x","subprotocol":null,"close_code_sent":1000,
   "close_code_received":1000,"elapsed_ms":42,"error":null}
Exit status 0 if every check passed, 1 otherwise (with "error" naming the
first failure, also printed to stderr).
"""

import argparse
import asyncio
import json
import os
import ssl
import sys
import time
from urllib.parse import urlsplit

from websockets.asyncio.client import connect

ONE_MIB = 1024 * 1024


class CheckFailed(Exception):
    pass


async def step(name, coro, timeout, checks):
    try:
        return await asyncio.wait_for(coro, timeout)
    except asyncio.TimeoutError:
        checks[name] = False
        raise CheckFailed(f"{name}: timed out after {timeout}s")
    except CheckFailed:
        checks[name] = False
        raise
    except Exception as e:  # connection errors, protocol errors
        checks[name] = False
        raise CheckFailed(f"{name}: {type(e).__name__}: {e}")


async def run(args, result):
    checks = result["checks"]
    t = args.timeout
    u = urlsplit(args.url)
    expect_path = args.expect_path
    if expect_path is None:
        expect_path = (u.path or "/") + ("?" + u.query if u.query else "")

    ssl_ctx = None
    if u.scheme == "wss":
        ssl_ctx = ssl.create_default_context(cafile=args.ca)
        if args.insecure:
            ssl_ctx.check_hostname = False
            ssl_ctx.verify_mode = ssl.CERT_NONE

    headers = []
    for h in args.header:
        k, _, v = h.partition(":")
        headers.append((k.strip(), v.strip()))

    kwargs = dict(
        open_timeout=t,
        close_timeout=t,
        ping_interval=None,
        max_size=16 * ONE_MIB,
        compression=None if args.no_compression else "deflate",
        additional_headers=headers or None,
        subprotocols=[args.subprotocol] if args.subprotocol else None,
        proxy=None,  # never pick up HTTP(S)_PROXY from the environment
    )
    if ssl_ctx is not None:
        kwargs["ssl"] = ssl_ctx

    ws = await step("handshake", connect(args.url, **kwargs), t, checks)
    checks["handshake"] = True
    result["subprotocol"] = ws.subprotocol
    try:
        async def echo(name, payload):
            await ws.send(payload)
            got = await ws.recv()
            if type(got) is not type(payload):
                raise CheckFailed(f"{name}: got {type(got).__name__} frame, sent {type(payload).__name__}")
            if got != payload:
                raise CheckFailed(f"{name}: echo mismatch (sent {len(payload)}, got {len(got)})")

        text = "hello fulcrum \u00e9\u2603"
        await step("text", echo("text", text), t, checks)
        checks["text"] = True

        blob = os.urandom(ONE_MIB)
        await step("binary_1mib", echo("binary_1mib", blob), t, checks)
        checks["binary_1mib"] = True

        async def ping():
            waiter = await ws.ping(b"fulcrum-ping")
            started = time.monotonic()
            await waiter
            return time.monotonic() - started

        latency = await step("ping", ping(), t, checks)
        result["ping_ms"] = round(latency * 1000, 2)
        checks["ping"] = True

        async def path():
            await ws.send("path?")
            got = await ws.recv()
            result["path"] = got
            if got != expect_path:
                raise CheckFailed(f"path: server saw {got!r}, expected {expect_path!r}")

        await step("path", path(), t, checks)
        checks["path"] = True
    finally:
        # Always try to close cleanly so the server side doesn't linger.
        async def close():
            await ws.close(code=1000, reason="bye")
            sent = ws.protocol.close_sent
            result["close_code_sent"] = sent.code if sent is not None else None
            result["close_code_received"] = ws.close_code
            if ws.close_code != 1000:
                raise CheckFailed(f"close: server close code {ws.close_code}, expected 1000")

        try:
            await step("close", close(), t, checks)
            checks["close"] = True
        except CheckFailed as e:
            if result["error"] is None:
                result["error"] = str(e)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--expect-path", default=None)
    ap.add_argument("--ca", default=None, help="CA file for wss://")
    ap.add_argument("--insecure", action="store_true", help="wss:// without verification")
    ap.add_argument("--header", action="append", default=[], help="extra request header NAME:VALUE")
    ap.add_argument("--subprotocol", default=None)
    ap.add_argument("--no-compression", action="store_true")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-step timeout, seconds")
    args = ap.parse_args()

    result = {
        "ok": False,
        "url": args.url,
        "checks": {},
        "path": None,
        "subprotocol": None,
        "ping_ms": None,
        "close_code_sent": None,
        "close_code_received": None,
        "elapsed_ms": None,
        "error": None,
    }
    started = time.monotonic()
    try:
        # Overall guard: 6 steps * per-step timeout, plus slack.
        asyncio.run(asyncio.wait_for(run(args, result), args.timeout * 6 + 5))
    except CheckFailed as e:
        result["error"] = result["error"] or str(e)
    except asyncio.TimeoutError:
        result["error"] = result["error"] or "overall timeout"
    except Exception as e:
        result["error"] = result["error"] or f"{type(e).__name__}: {e}"
    result["elapsed_ms"] = round((time.monotonic() - started) * 1000)
    expected = ["handshake", "text", "binary_1mib", "ping", "path", "close"]
    result["ok"] = result["error"] is None and all(result["checks"].get(c) for c in expected)
    if not result["ok"] and result["error"] is None:
        result["error"] = "missing checks: " + ", ".join(c for c in expected if not result["checks"].get(c))
    print(json.dumps(result, separators=(",", ":")), flush=True)
    if not result["ok"]:
        print(f"ws_client: FAILED: {result['error']}", file=sys.stderr)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
