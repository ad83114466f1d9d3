#!/usr/bin/env python3
"""Fetches compressed bodies with Python's own HTTP client and decoders.

Usage: decode.py BASE_URL CODING SIZES

For each size N of the comma-separated SIZES, GETs BASE_URL + N over HTTP/1.1 with
`Accept-Encoding: CODING` (gzip, br or zstd), checks that the response says
`Content-Encoding: CODING`, and decodes the body as it streams in (zlib, brotli and
zstandard streaming decoders), comparing every decoded byte with the text the test
backend serves (lines of 53 bytes: an 8-digit number, then " the quick brown fox jumps
over the lazy dog"). Memory stays one piece of the body, whatever N. Prints "OK CODING"
when every size matched, else the first difference, and exits 1.
"""

import http.client
import sys
import urllib.parse
import zlib

import brotli
import zstandard

LINE = 53


def text(offset, length):
    first = offset // LINE
    out = bytearray()
    line = first
    while len(out) < length + offset % LINE:
        out += b"%08d the quick brown fox jumps over the lazy dog\n" % line
        line += 1
    return bytes(out[offset % LINE: offset % LINE + length])


def decoder(coding):
    if coding == "gzip":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return d.decompress, d.flush
    if coding == "br":
        d = brotli.Decompressor()
        return d.process, lambda: b""
    if coding == "zstd":
        d = zstandard.ZstdDecompressor().decompressobj()
        return d.decompress, lambda: b""
    raise SystemExit(f"unknown coding {coding}")


def check(base, coding, size):
    url = urllib.parse.urlsplit(base + str(size))
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    conn.request("GET", url.path, headers={"Accept-Encoding": coding})
    resp = conn.getresponse()
    if resp.status != 200:
        return f"status {resp.status}"
    got = resp.getheader("Content-Encoding")
    if got != coding:
        return f"Content-Encoding {got!r}"
    decode, flush = decoder(coding)
    at = 0
    while True:
        piece = resp.read(65536)
        plain = decode(piece) if piece else flush()
        if plain:
            if plain != text(at, len(plain)):
                return f"differs in bytes {at}..{at + len(plain)}"
            at += len(plain)
        if not piece:
            break
    conn.close()
    if at != size:
        return f"{at} bytes decoded"
    return None


def main():
    if len(sys.argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    base, coding, sizes = sys.argv[1:]
    for size in sizes.split(","):
        problem = check(base, coding, int(size))
        if problem:
            print(f"FAIL {coding} {size}: {problem}")
            return 1
    print(f"OK {coding}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
