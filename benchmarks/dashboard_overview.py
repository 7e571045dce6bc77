"""How fast the dashboard's overview page is: p50/p90/p99 latency under concurrent clients.

Builds a throw-away data directory with the bundled plan and N time entries (default 10,000,
spread over the plan's items and the year before "today"), starts `z2v serve dashboard` in its
own process on a free loopback port, and runs C closed-loop clients (default 20 threads, each
with its own keep-alive connection) fetching GET / for a while. Scenarios:

  cached      the normal server: the rendered page is reused until the database changes
  writes      the same while another process logs time every 0.5 s (each write invalidates)
  uncached    every request renders afresh (--no-cache): the cost of a cache miss

    PYTHONPATH=src python benchmarks/dashboard_overview.py [--entries 10000] [--clients 20]
        [--seconds 10] [--scenarios cached,writes,uncached]

Target (issue 6): overview p99 <= 50 ms with 20 clients and 10,000 entries.
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
import threading
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


def start_server(home: Path, cache: bool, threads: int | None = None) -> tuple[subprocess.Popen, int]:
    """`z2v serve dashboard --port 0` in its own process; THREADS None: the command's default."""
    env = dict(os.environ, ZERO2VLLM_HOME=str(home), ZERO2VLLM_NOW=TODAY,
               PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "zero2vllm", "serve", "dashboard", "--port", "0"]
    if threads:
        cmd += ["--threads", str(threads)]
    if not cache:
        cmd.append("--no-cache")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not m:
        proc.kill()
        raise SystemExit(f"the dashboard did not start: {line}{proc.stdout.read()}")
    return proc, int(m.group(1))


def get(conn: http.client.HTTPConnection, cookies: dict | None = None) -> int:
    """GET / like a browser tab: keep-alive, and the session cookie sent back once set."""
    headers = {"Cookie": cookies["session"]} if cookies and "session" in cookies else {}
    conn.request("GET", "/", headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200 or b"Burn-up" not in body:
        raise RuntimeError(f"GET / answered {resp.status}: {body[:200]!r}")
    set_cookie = resp.getheader("Set-Cookie")
    if cookies is not None and set_cookie:
        cookies["session"] = set_cookie.split(";", 1)[0]
    return len(body)


def run_clients(port: int, clients: int, seconds: float) -> tuple[list[float], int]:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0]
    first_error: list[str] = []
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        cookies: dict = {}
        get(conn, cookies)  # connect, get a session and warm up outside the measurement
        start.wait()
        while time.perf_counter() < stop_at[0]:
            t0 = time.perf_counter()
            try:
                get(conn, cookies)
            except Exception as exc:
                errors[0] += 1
                if not first_error:
                    first_error.append(f"{type(exc).__name__}: {exc}")
                    print(f"first error: {first_error[0]}", file=sys.stderr)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            latencies[k].append(time.perf_counter() - t0)
        conn.close()

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds + 1e9  # set properly once everyone is connected
    start.wait()
    stop_at[0] = time.perf_counter() + seconds
    for t in threads:
        t.join()
    return [x for per in latencies for x in per], errors[0]


def writer(home: Path, every: float, stop: threading.Event) -> None:
    """Another process's writes: `z2v log` through the library, as the CLI does."""
    code = (
        "import os,sys,time\n"
        "from zero2vllm.tracker.store import Store\nfrom zero2vllm.paths import db_path\n"
        "s=Store.open(db_path())\n"
        "while True:\n"
        "    s.log_time('w1.illustrated-transformer','2027-01-05',60,'log 1m')\n"
        f"    time.sleep({every})\n"
    )
    env = dict(os.environ, ZERO2VLLM_HOME=str(home),
               PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    stop.wait()
    proc.kill()
    proc.wait()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--scenarios", default="cached,writes,uncached")
    ap.add_argument("--target-ms", type=float, default=50.0)
    ap.add_argument("--threads", type=int, default=None, help="server threads (default: the command's)")
    args = ap.parse_args()

    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="z2v-bench-dash-") as tmp:
        home = Path(tmp)
        t0 = time.perf_counter()
        build_store(home, args.entries)
        print(f"store: {args.entries:,} time entries in {time.perf_counter() - t0:.1f} s; "
              f"{args.clients} clients, {args.seconds:g} s per scenario", file=sys.stderr)
        for scenario in args.scenarios.split(","):
            proc, port = start_server(home, cache=scenario != "uncached", threads=args.threads)
            stop = threading.Event()
            w = None
            try:
                if scenario == "writes":
                    w = threading.Thread(target=writer, args=(home, 0.5, stop), daemon=True)
                    w.start()
                lat, errors = run_clients(port, args.clients, args.seconds)
            finally:
                stop.set()
                if w:
                    w.join()
                proc.terminate()
                proc.wait()
            ms = [x * 1000 for x in lat]
            rows.append((scenario, len(ms), errors, len(ms) / args.seconds, statistics.median(ms),
                         pct(ms, 90), pct(ms, 99), max(ms)))

    print(f"\nDashboard overview (GET /), {args.entries:,} time entries, {args.clients} concurrent "
          f"clients, {args.seconds:g} s each; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average before "
          f"{load_before:.1f}")
    head = f"{'scenario':<10} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 ms':>7} {'p90 ms':>7} " \
           f"{'p99 ms':>7} {'max ms':>7}  p99 <= {args.target_ms:g} ms"
    print(head)
    print("-" * len(head))
    for name, n, err, rps, p50, p90, p99, mx in rows:
        ok = "yes" if p99 <= args.target_ms and not err else "NO"
        print(f"{name:<10} {n:>8} {err:>6} {rps:>7.0f} {p50:>7.1f} {p90:>7.1f} {p99:>7.1f} {mx:>7.1f}  {ok}")


if __name__ == "__main__":
    main()
