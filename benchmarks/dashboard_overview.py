"""How fast every dashboard page is for one user: p50/p99 latency per page.

Builds a throw-away data directory with the bundled plan and N time entries (default 10,000,
spread over the plan's items and the year before "today"), starts `z2v serve dashboard` in its
own process on a free loopback port, and fetches each page R times in turn (default 200) over
one keep-alive connection, as one browser tab would, session cookie included. It also reports
the CPU time of each request, measured in-process through Flask's test client (the same app):
on a machine shared with other work, wall times grow with the load, CPU times much less.

    PYTHONPATH=src python benchmarks/dashboard_overview.py [--entries 10000] [--requests 200]
        [--pages /,/week/,...] [--markdown]

Goal (issue 14): every page under 100 ms at p99 for one user with 10,000 time entries.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

TODAY = "2027-01-05T10:30:00"  # week 7 of a plan starting 2026-11-23: most of the plan has data


def build_store(home: Path, entries: int, seed: int = 0) -> None:
    os.environ["ZERO2VLLM_HOME"] = str(home)
    os.environ["ZERO2VLLM_NOW"] = TODAY
    from zero2vllm.tracker import progress
    from zero2vllm.paths import db_path
    from zero2vllm.tracker.store import Store

    store = Store.open(db_path())
    plan = progress.load_plan(store)
    store.set_start_date("2026-11-23")
    ids = [i.id for i in plan.items()]
    rng = random.Random(seed)
    before = store.count_entries()  # the bundled plan's "watched for 30 min" annotation
    today = date.fromisoformat(TODAY[:10])
    with store.transaction():
        for _ in range(entries):
            day = today - timedelta(days=rng.randrange(0, 365))
            store.add_entry(rng.choice(ids), day.isoformat(), rng.randrange(5, 90) * 60,
                            note="benchmark", source="log")
        for item_id in ids[: len(ids) // 3]:
            store.set_state(item_id, "done")
    store.set_note(ids[0], "# Notes\n\nSome **markdown** <script>x</script>", "note")
    assert store.count_entries() == before + entries
    store.close()


def start_server(home: Path) -> tuple[subprocess.Popen, int]:
    """`z2v serve dashboard --port 0` in its own process."""
    env = dict(os.environ, ZERO2VLLM_HOME=str(home), ZERO2VLLM_NOW=TODAY,
               PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "zero2vllm", "serve", "dashboard", "--port", "0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not m:
        proc.kill()
        raise SystemExit(f"the dashboard did not start: {line}{proc.stdout.read()}")
    return proc, int(m.group(1))


def get(conn: http.client.HTTPConnection, path: str, cookies: dict) -> int:
    """GET PATH like a browser tab: keep-alive, and the session cookie sent back once set."""
    headers = {"Cookie": cookies["session"]} if "session" in cookies else {}
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"GET {path} answered {resp.status}: {body[:200]!r}")
    set_cookie = resp.getheader("Set-Cookie")
    if set_cookie:
        cookies["session"] = set_cookie.split(";", 1)[0]
    return len(body)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def cpu_times(home: Path, pages: list[str], requests: int) -> dict[str, list[float]]:
    """CPU milliseconds per request of each page, in this process through the test client."""
    os.environ.update(ZERO2VLLM_HOME=str(home), ZERO2VLLM_NOW=TODAY)
    from zero2vllm.paths import db_path
    from zero2vllm.web import create_app

    client = create_app(db_path()).test_client()
    out = {}
    for path in pages:
        client.get(path)
        ms = []
        for _ in range(requests):
            t = time.thread_time()
            resp = client.get(path)
            ms.append((time.thread_time() - t) * 1000)
            assert resp.status_code == 200, (path, resp.status_code)
        out[path] = ms
    return out


PAGES = ["/", "/week/", "/week/1", "/week/7", "/labs", "/plan", "/plan/export", "/review",
         "/engine/trace"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=200, help="requests per page")
    ap.add_argument("--pages", default=",".join(PAGES))
    ap.add_argument("--target-ms", type=float, default=100.0)
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown rows")
    args = ap.parse_args()

    pages = [p for p in args.pages.split(",") if p]
    load_before = os.getloadavg()[0]
    results = {}
    with tempfile.TemporaryDirectory(prefix="z2v-bench-dash-") as tmp:
        home = Path(tmp)
        t0 = time.perf_counter()
        build_store(home, args.entries)
        print(f"store: {args.entries:,} time entries in {time.perf_counter() - t0:.1f} s; "
              f"{args.requests} requests per page, one client", file=sys.stderr)
        proc, port = start_server(home)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            cookies: dict = {}
            for path in pages:
                get(conn, path, cookies)  # warm-up: templates compiled, plan cache filled
            for path in pages:
                ms = []
                for _ in range(args.requests):
                    t = time.perf_counter()
                    get(conn, path, cookies)
                    ms.append((time.perf_counter() - t) * 1000)
                results[path] = ms
            conn.close()
        finally:
            proc.terminate()
            proc.wait()
        cpu = cpu_times(home, pages, args.requests)

    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
               f"{platform.python_version()}, load average before {load_before:.1f}")
    print(f"\nDashboard pages, one client, {args.entries:,} time entries, {args.requests} requests "
          f"each; {machine}")
    head = (f"{'page':<16} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'cpu p99':>8}  "
            f"p99 < {args.target_ms:g} ms")
    print(head)
    print("-" * len(head))
    for path, ms in results.items():
        ok = "yes" if pct(ms, 99) < args.target_ms else "NO"
        print(f"{path:<16} {statistics.median(ms):>7.1f} {pct(ms, 99):>7.1f} {max(ms):>7.1f} "
              f"{pct(cpu[path], 99):>8.1f}  {ok}")
    if args.markdown:
        today = date.today().isoformat()
        for path, ms in results.items():
            print(f"| `{path}` | {pct(ms, 99):.1f} | {pct(cpu[path], 99):.1f} | {today} | {machine} | "
                  f"`PYTHONPATH=src python benchmarks/dashboard_overview.py` |")


if __name__ == "__main__":
    main()
