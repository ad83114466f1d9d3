#!/usr/bin/env python3
"""WebSocket echo server used as a Fulcrum backend in integration tests.

Usage:
    python3 tests/peers/ws_echo.py PORT_FILE [--host 127.0.0.1] [--name NAME]

Listens on HOST (default 127.0.0.1) port 0, writes the chosen port as ASCII
decimal (no newline) to PORT_FILE atomically (write PORT_FILE.tmp, then
rename), prints "listening HOST:PORT" on stdout and serves until killed.

Behaviour per connection:
  * every text or binary message is echoed back unchanged (same opcode);
  * the text message "path?" is answered with the request path (with query
    string) of the opening handshake, e.g. "/chat?room=1";
  * the text message "headers?" is answered with a JSON object of the
    handshake request headers, lower-cased names, repeated headers joined
    with ", " (so tests can check X-Forwarded-For, Host, ...);
  * the text message "name?" is answered with the --name value;
  * if the client offers subprotocols, the first one is selected.
Pings are answered by the library (pong). Messages of up to 64 MiB and up
to 2**20 fragments are accepted (enough for the Autobahn fuzzing client),
and permessage-deflate is negotiated if the client asks for it (disable
with --no-compression).
"""

import argparse
import asyncio
import json
import os
import logging
import signal
import sys

# websockets (17.x) refuses messages of more than 4096 fragments with close
# code 1009 (TooManyFragments); Autobahn 9.3.x/9.4.x send 4 MiB in 64-byte
# fragments (65536 of them). The limit is read from the environment at import.
os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 20))

from websockets.asyncio.server import serve  # noqa: E402

# Autobahn's fuzzing cases break the protocol on purpose: the server's report of each
# connection it closed for that is expected, not test output.
logging.getLogger("websockets").setLevel(logging.CRITICAL)

MAX_SIZE = 64 * 1024 * 1024


def write_port_file(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("port_file")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--name", default="ws-echo")
    ap.add_argument("--no-compression", action="store_true")
    args = ap.parse_args()

    def select_subprotocol(connection, subprotocols):
        return subprotocols[0] if subprotocols else None

    async def handler(ws):
        req = ws.request
        async for msg in ws:
            if msg == "path?":
                await ws.send(req.path)
            elif msg == "headers?":
                hdrs = {}
                for k, v in req.headers.raw_items():
                    k = k.lower()
                    hdrs[k] = hdrs[k] + ", " + v if k in hdrs else v
                await ws.send(json.dumps(hdrs, sort_keys=True))
            elif msg == "name?":
                await ws.send(args.name)
            else:
                await ws.send(msg)

    async def run():
        stop = asyncio.get_running_loop().create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
        async with serve(
            handler,
            args.host,
            0,
            max_size=MAX_SIZE,
            max_queue=64,
            compression=None if args.no_compression else "deflate",
            select_subprotocol=select_subprotocol,
            ping_interval=None,  # don't drop idle test connections
        ) as server:
            port = server.sockets[0].getsockname()[1]
            write_port_file(args.port_file, port)
            print(f"listening {args.host}:{port}", flush=True)
            await stop

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
