#!/usr/bin/env python3
"""The client of bench/ha: THREADS threads each send GET URL on a new connection every
PACE seconds (at most) for DURATION seconds, with a TIMEOUT. When done, it reads the time
of the failover event from EVENT_FILE (written by bench/ha, `date +%s.%N`) and prints one
JSON line:

  requests  requests sent
  lost      requests that got no 200 (refused, reset, timed out, another status)
  outage_s  time from the event to the first 200 after the last failure (0: no failure)
  gap_s     the longest time after the event without a 200 arriving
  last_ok   the body of the last 200 (which node answered, when the backend says)

Usage: ha_client.py URL DURATION EVENT_FILE [THREADS] [PACE] [TIMEOUT]
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse


def main():
    url = urllib.parse.urlsplit(sys.argv[1])
    duration = float(sys.argv[2])
    event_file = sys.argv[3]
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    pace = float(sys.argv[5]) if len(sys.argv) > 5 else 0.01
    timeout = float(sys.argv[6]) if len(sys.argv) > 6 else 1.0
    end = time.time() + duration
    results = []  # (start, end, ok)
    lock = threading.Lock()

    def worker():
        mine = []
        while True:
            start = time.time()
            if start >= end:
                break
            ok = False
            try:
                conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout)
                conn.request("GET", url.path or "/")
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
                conn.close()
            except (OSError, http.client.HTTPException):
                pass
            done = time.time()
            mine.append((start, done, ok))
            rest = pace - (done - start)
            if rest > 0:
                time.sleep(rest)
        with lock:
            results.extend(mine)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    try:
        with open(event_file) as f:
            event = float(f.read().strip())
    except (OSError, ValueError):
        event = None
    results.sort()
    lost = [r for r in results if not r[2]]
    outage = 0.0
    if lost and event is not None:
        last_fail = max(r[0] for r in lost)
        after = [r[1] for r in results if r[2] and r[0] > last_fail]
        recovered = min(after) if after else end
        outage = max(0.0, recovered - event)
    # The longest time after the event without a 200 arriving.
    gap = 0.0
    if event is not None:
        last = event
        for done in sorted(r[1] for r in results if r[2] and r[1] > event):
            gap = max(gap, done - last)
            last = done
        gap = max(gap, end - last) if last > event else gap
    print(json.dumps({
        "gap_s": round(gap, 3),
        "requests": len(results),
        "lost": len(lost),
        "outage_s": round(outage, 3),
        "first_lost_after_event_s": round(min(r[0] for r in lost) - event, 3) if lost and event else None,
        "lost_after_event_s": [round(r[0] - event, 2) for r in lost][-10:] if event else None,
    }))


if __name__ == "__main__":
    main()
