#!/usr/bin/env python3
"""Has Chromium (through Playwright) fetch compressed bodies and check them.

Usage: compressed_page.py BASE_URL SIZES

Opens BASE_URL in Debian's Chromium (headless, --no-sandbox as root), then, for each
coding (gzip, br, zstd) and each size N of the comma-separated SIZES, fetches
BASE_URL/CODING/text/N from the page, checks the response's Content-Encoding and
compares the text the browser decoded with the one the test backend serves (lines of
53 bytes: an 8-digit number, then " the quick brown fox jumps over the lazy dog").
Prints "OK CODING" per coding whose every size matched, or "FAIL ..." and exits 1.
Bounded: 120 s for all.
"""

import sys

from playwright.sync_api import sync_playwright

CHECK = """
async ([path, size]) => {
  const r = await fetch(path, {cache: "no-store"});
  const encoding = r.headers.get("content-encoding");
  const body = await r.text();
  const lines = [];
  for (let i = 0; i * 53 < size; i++) {
    lines.push(String(i).padStart(8, "0") + " the quick brown fox jumps over the lazy dog\\n");
  }
  const expected = lines.join("").slice(0, size);
  return {encoding, same: body === expected, length: body.length, status: r.status};
}
"""


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    base, sizes = sys.argv[1:]
    base = base.rstrip("/")
    failed = False
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page()
        page.set_default_timeout(120000)
        page.goto(base + "/text/10")
        for coding in ["gzip", "br", "zstd"]:
            ok = True
            for size in sizes.split(","):
                got = page.evaluate(CHECK, [f"/{coding}/text/{size}", int(size)])
                if got["encoding"] != coding or not got["same"]:
                    print(f"FAIL {coding} {size}: {got}")
                    ok = False
                    failed = True
                    break
            if ok:
                print(f"OK {coding}")
        browser.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
