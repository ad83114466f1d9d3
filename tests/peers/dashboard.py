#!/usr/bin/env python3
"""Drives Fulcrum's dashboard in a real browser (Chromium through Playwright).

Usage: dashboard.py ADMIN_URL TOKEN WATCH DRAIN

Loads ADMIN_URL (the admin listener's page), waits until every backend row shows,
then prints "READY" and waits until the row of backend WATCH shows "down" (the test
kills that backend meanwhile), printing "DOWN <unix ms>" when it does. It then types
TOKEN in the page, clicks "drain" on backend DRAIN, waits for its row to show
"draining" and prints "DRAINED". Last it prints "CONSOLE <n>" followed by each console
error or uncaught page error, one per line, and exits 0. Bounded: 60 s in all; any
step that times out prints "TIMEOUT <step>" and exits 1.

Chromium is Debian's (/usr/bin/chromium), run headless with --no-sandbox (as root).
"""

import sys
import time

from playwright.sync_api import sync_playwright, TimeoutError as PlaywrightTimeout


def row(page, backend):
    return page.locator(f'tr[data-backend="{backend}"]')


def main():
    if len(sys.argv) != 5:
        sys.stderr.write(__doc__)
        return 2
    url, token, watch, drain = sys.argv[1:]
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        step = "load"
        try:
            page.goto(url, timeout=15000)
            step = "rows"
            for b in (watch, drain):
                row(page, b).locator("td.status", has_text="up").wait_for(timeout=15000)
            print("READY", flush=True)
            step = "down"
            row(page, watch).locator("td.status", has_text="down").wait_for(timeout=20000)
            print(f"DOWN {int(time.time() * 1000)}", flush=True)
            step = "drain"
            page.fill("#token", token)
            row(page, drain).locator("button.drain").click(timeout=10000)
            row(page, drain).locator("td.status", has_text="draining").wait_for(timeout=10000)
            print("DRAINED", flush=True)
        except PlaywrightTimeout:
            print(f"TIMEOUT {step}", flush=True)
            browser.close()
            return 1
        browser.close()
    print(f"CONSOLE {len(errors)}", flush=True)
    for e in errors:
        print(e.replace("\n", " "), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
