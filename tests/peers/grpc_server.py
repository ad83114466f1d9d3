#!/usr/bin/env python3
"""gRPC backend for Fulcrum integration tests, using generic (raw bytes) handlers.

Usage:
    python3 tests/peers/grpc_server.py PORT_FILE [--name NAME] [--host 127.0.0.1]
                                               [--tls CERT KEY]

Serves service `fulcrum.Test` on HOST (default 127.0.0.1) port 0 without any
protoc/generated code: requests and responses are raw bytes (no protobuf).
Writes the port as ASCII decimal to PORT_FILE atomically (PORT_FILE.tmp +
rename), prints "listening HOST:PORT (tls|plaintext) name=NAME", and serves
until SIGTERM/SIGINT. With --tls CERT KEY (PEM files) it serves TLS (ALPN h2)
via grpc.ssl_server_credentials instead of plaintext h2c.

Methods (full names /fulcrum.Test/<Method>):
  Unary         request R -> b"NAME:" + R; initial metadata x-server: NAME,
                trailing metadata x-trailer: NAME
  ServerStream  request ascii integer N -> N messages b"0" .. b"N-1";
                trailing metadata x-trailer: NAME
  ClientStream  stream of requests -> their concatenation; x-trailer: NAME
  BidiStream    echoes each request as it arrives; x-trailer: NAME
  Sleep         request ascii milliseconds M -> sleeps M ms (stops early if the
                call is cancelled / deadline passes), answers b"slept M"
  Fail          aborts with StatusCode.NOT_FOUND, details "nope"
  Metadata      answers a JSON object of the request metadata (lower-case
                keys, values as strings; binary -bin values base64), plus
                "peer" -- lets tests check what the proxy forwarded
"""

import argparse
import base64
import json
import os
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "fulcrum.Test"


def write_port_file(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def build_handler(name):
    name_b = name.encode()
    trailer = (("x-trailer", name),)

    def unary(request, context):
        context.send_initial_metadata((("x-server", name),))
        context.set_trailing_metadata(trailer)
        return name_b + b":" + request

    def server_stream(request, context):
        try:
            n = int(request.decode("ascii").strip() or "0")
        except ValueError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request must be an ascii integer")
        context.set_trailing_metadata(trailer)
        for i in range(n):
            yield str(i).encode()

    def client_stream(request_iterator, context):
        out = b"".join(request_iterator)
        context.set_trailing_metadata(trailer)
        return out

    def bidi_stream(request_iterator, context):
        context.set_trailing_metadata(trailer)
        for req in request_iterator:
            yield req

    def sleep(request, context):
        try:
            ms = int(request.decode("ascii").strip() or "0")
        except ValueError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request must be ascii milliseconds")
        deadline = time.monotonic() + ms / 1000.0
        while context.is_active():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, 0.02))
        context.set_trailing_metadata(trailer)
        return b"slept %d" % ms

    def fail(request, context):
        context.set_trailing_metadata(trailer)
        context.abort(grpc.StatusCode.NOT_FOUND, "nope")

    def metadata(request, context):
        md = {}
        for k, v in context.invocation_metadata():
            if isinstance(v, bytes):
                v = base64.b64encode(v).decode()
            md[k] = md[k] + ", " + v if k in md else v
        md["peer"] = context.peer()
        context.set_trailing_metadata(trailer)
        return json.dumps(md, sort_keys=True).encode()

    # request_deserializer/response_serializer left as None: raw bytes.
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "BidiStream": grpc.stream_stream_rpc_method_handler(bidi_stream),
            "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
            "Metadata": grpc.unary_unary_rpc_method_handler(metadata),
        },
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("port_file")
    ap.add_argument("--name", default="grpc-backend")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), default=None)
    ap.add_argument("--workers", type=int, default=32)
    args = ap.parse_args()

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.workers),
        handlers=[build_handler(args.name)],
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.max_send_message_length", 16 * 1024 * 1024),
        ],
    )
    addr = f"{args.host}:0"
    if args.tls:
        cert_path, key_path = args.tls
        with open(cert_path, "rb") as f:
            cert = f.read()
        with open(key_path, "rb") as f:
            key = f.read()
        port = server.add_secure_port(addr, grpc.ssl_server_credentials([(key, cert)]))
    else:
        port = server.add_insecure_port(addr)
    if not port:
        print(f"grpc_server: could not bind {addr}", file=sys.stderr)
        return 1
    server.start()
    write_port_file(args.port_file, port)
    print(
        f"listening {args.host}:{port} ({'tls' if args.tls else 'plaintext'}) name={args.name}",
        flush=True,
    )

    stopped = threading.Event()

    def on_signal(signum, frame):
        stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopped.wait(0.5):
        pass
    server.stop(grace=0.5).wait(2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
