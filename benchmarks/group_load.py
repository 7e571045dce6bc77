"""The group dashboard under load: 50 learners x 10,000 time entries, 20 concurrent clients.

    python benchmarks/group_load.py [--db URL] [--learners 50] [--entries 10000] [--clients 20]
                                    [--seconds 15] [--json out.json]

Without --db it starts a throw-away PostgreSQL with scripts/pg.sh. The data goes in through the
real push (`POST /api/v1/sync/push`, 5,000 changes a batch). The server is `z2v serve group`
(waitress) in its own process; each page gets CLIENTS keep-alive clients (threads in 4 client
processes) for SECONDS, and the table gives p50/p99/max latency, requests per second and the
server process's CPU time per request (which a busy machine inflates much less than latency).
A second round does the same while learners sync WRITES changes a second, and a third adds a
think time between each client's pages (THINK_MS on average), as people reading a page do. Then one push of
1,000 new time entries is timed end to end (client send to answer).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from group_load_data import TODAY, hex32, learner_changes  # noqa: E402
def push(port: int, token: str, device: str, changes: list[dict]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    body = json.dumps({"device": device, "changes": changes}).encode()
    conn.request("POST", "/api/v1/sync/push", body, {"Authorization": f"Bearer {token}",
                                                     "Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


# -- the server and the clients ------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db_url: str, port: int, secret: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "zero2vllm", "serve", "group", "--db", db_url,
                             "--port", str(port), "--secret-file", str(secret)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited: {proc.stderr.read().decode()[-800:]}")
            time.sleep(0.1)
    raise SystemExit("the server did not start listening in 30 s")


def _client_process(port, cookie, paths, threads, start, seconds, first, think=0.0) -> tuple[list[float], list[str]]:
    """THREADS keep-alive clients in one process, from START (a shared clock) for SECONDS; each
    waits THINK seconds on average (uniform 0.5-1.5x) between a response and its next request."""
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(k: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, i = [], k
        rng = random.Random(k)
        while time.time() < start:
            time.sleep(0.001)
        stop = start + seconds
        while time.time() < stop:
            path = paths[i % len(paths)]
            i += 1
            t0 = time.perf_counter()
            try:
                conn.request("GET", path, headers={"Cookie": cookie})
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{path}: {exc}")
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            mine.append(time.perf_counter() - t0)
            if resp.status != 200:
                errors.append(f"{path}: HTTP {resp.status}")
            if think:
                time.sleep(think * rng.uniform(0.5, 1.5))
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=client, args=(first + k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return lat, errors


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hammer(port: int, cookie: str, paths: list[str], clients: int, seconds: float, server_pid: int,
           processes: int = 4, think: float = 0.0) -> dict:
    """CLIENTS keep-alive clients (in PROCESSES processes, so the clients' own Python does not
    queue behind one interpreter lock) cycling through PATHS; and the server's CPU per request."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    per = [clients // processes + (k < clients % processes) for k in range(processes)]
    start = time.time() + 0.5
    cpu0 = cpu_seconds(server_pid)
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as ex:
        futs = [ex.submit(_client_process, port, cookie, paths, n, start, seconds, sum(per[:k]), think)
                for k, n in enumerate(per) if n]
        parts = [f.result() for f in futs]
    cpu = cpu_seconds(server_pid) - cpu0
    lat = sorted(x for p in parts for x in p[0])
    errors = [e for p in parts for e in p[1]]
    pick = lambda q: 1000 * lat[min(int(q * len(lat)), len(lat) - 1)] if lat else float("nan")
    return {"requests": len(lat), "p50_ms": pick(0.50), "p99_ms": pick(0.99),
            "max_ms": 1000 * lat[-1] if lat else float("nan"), "req_s": len(lat) / seconds,
            "server_cpu_ms": 1000 * cpu / max(len(lat), 1),
            "errors": len(errors), "first_error": errors[0] if errors else None}


def cold_requests(url: str, cookie: str, pages: dict, runs: int = 10) -> dict:
    """Each page in this process (Flask's test client) with its page cache emptied: "after a
    sync" keeps the cohort's per-learner rows (a sync changes one learner's), "cold" empties
    those too (a new day, a restart; parsed plans stay). Median and max ms of RUNS."""
    from zero2vllm.group.app import create_app

    app = create_app(url, secret_key=b"k" * 32, pool_size=2)
    client = app.test_client()
    name, value = cookie.split("=", 1)
    client.set_cookie(name, value)
    out = {}
    for page, paths in pages.items():
        for mode in ("after a sync", "cold"):
            client.get(paths[0])
            times = []
            for i in range(runs):
                app.extensions.pop("z2v_dashboard_cache", None)
                if mode == "cold":
                    app.extensions.pop("z2v_dashboard_rows", None)
                t0 = time.perf_counter()
                status = client.get(paths[i % len(paths)]).status_code
                times.append(1000 * (time.perf_counter() - t0))
                assert status == 200, (page, status)
            times.sort()
            out[f"{page}, {mode}"] = {"median_ms": times[len(times) // 2], "max_ms": times[-1]}
    app.extensions["z2v_pool"].close()
    return out


class Writer(threading.Thread):
    """Sync traffic during a round: RATE new time entries a second, each from a random learner,
    through the real push."""

    def __init__(self, port, tokens, rate):
        super().__init__(daemon=True)
        self.port, self.tokens, self.rate = port, tokens, rate
        self.stop, self.count = threading.Event(), 0

    def run(self):
        rng = random.Random(1)
        while not self.stop.wait(1 / self.rate):
            lid = rng.choice(list(self.tokens))
            uid, day = hex32(), TODAY.isoformat()
            ch = {"id": hex32(), "entity": "time_entry", "key": uid, "version": time.time_ns() // 1000,
                  "device": hex32(), "deleted": False, "row": {
                      "uid": uid, "item_id": "w1.x", "day": day, "seconds": 600, "started_at": None,
                      "ended_at": None, "note": None, "source": "log", "created_at": day + "T12:00:00+00:00"}}
            push(self.port, self.tokens[lid], ch["device"], [ch])
            self.count += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", help="postgresql:// URL of an empty database (default: start one)")
    ap.add_argument("--learners", type=int, default=50)
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--writes", type=float, default=2.0,
                    help="changes synced per second during the second round (each one empties the page cache)")
    ap.add_argument("--think-ms", type=float, default=100.0,
                    help="a third round where each client waits this long (on average) between pages, as "
                         "people clicking do; the first two rounds never wait (the machine's saturation)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from zero2vllm.group import auth, db, sessions
    from zero2vllm.paths import default_plan_path
    from zero2vllm.tracker import plan as planlib

    tmp = Path(tempfile.mkdtemp(prefix="z2v-load-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    pg_dir = None
    if args.db:
        url = args.db
    else:
        pg_dir = tmp / "pg"
        url = subprocess.run(["bash", str(ROOT / "scripts" / "pg.sh"), "start", str(pg_dir)], check=True,
                             capture_output=True, text=True).stdout.strip()
    server = None
    try:
        with db.connect(url) as conn:
            db.migrate(conn)
            mentor = conn.execute("INSERT INTO account (email, name, role, password_hash) VALUES"
                                  " ('mentor@example.org', 'mentor', 'mentor', '!') RETURNING id").fetchone()["id"]
            ids = [conn.execute("INSERT INTO account (email, name, role, password_hash, on_board, share_notes)"
                                " VALUES (%s, %s, 'learner', '!', %s, %s) RETURNING id",
                                (f"l{n}@example.org", f"learner {n:02d}", n % 2 == 0, n % 3 == 0)).fetchone()["id"]
                   for n in range(args.learners)]
            tokens = {lid: auth.issue_token(conn, lid, "bench") for lid in ids}
            cookie = f"{sessions.SESSION_COOKIE}={sessions.start(conn, mentor)}"
            conn.commit()
        port = free_port()
        server = start_server(url, port, tmp / "secret")

        plan_text = default_plan_path().read_text(encoding="utf-8")
        item_ids = [i.id for i in planlib.parse(plan_text).items()]
        rng = random.Random(0)
        print(f"loading {args.learners} learners x {args.entries} time entries through POST /api/v1/sync/push",
              flush=True)
        t0 = time.perf_counter()
        with db.connect(url) as conn:
            for lid in ids:
                changes = learner_changes(lid, args.entries, plan_text, item_ids, rng)
                device = changes[0]["device"]
                for i in range(0, len(changes), 5000):
                    status, body = push(port, tokens[lid], device, changes[i:i + 5000])
                    if status != 200:
                        raise SystemExit(f"push refused: HTTP {status} {body[:300]!r}")
            conn.execute("ANALYZE")
        load_s = time.perf_counter() - t0
        print(f"loaded in {load_s:.1f} s", flush=True)

        pages = {"cohort": ["/group/"], "inactive": ["/group/inactive?days=3"], "labs": ["/group/labs"],
                 "board": ["/group/board"], "learner": [f"/group/learner/{lid}" for lid in ids]}
        hammer(port, cookie, [p for ps in pages.values() for p in ps], args.clients, 3.0, server.pid)  # warm-up
        results = {}
        rounds = [(0.0, 0.0)] + ([(args.writes, 0.0)] if args.writes else []) \
            + ([(args.writes, args.think_ms / 1000)] if args.think_ms else [])
        for rate, think in rounds:
            writer = Writer(port, tokens, rate) if rate else None
            if writer:
                writer.start()
            for name, paths in pages.items():
                label = name + (f", {rate:g} syncs/s" if rate else "") + (f", {think * 1000:g} ms think" if think else "")
                results[label] = r = hammer(port, cookie, paths, args.clients, args.seconds, server.pid, think=think)
                print(f"  {label:<34} {r['requests']:>6} req  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms"
                      f"  max {r['max_ms']:6.1f} ms  {r['req_s']:6.1f} req/s  server CPU {r['server_cpu_ms']:.2f} ms/req"
                      f"  errors {r['errors']}", flush=True)
            if writer:
                writer.stop.set()
                writer.join()
                print(f"  ({writer.count} changes synced during that round)")

        cold = cold_requests(url, cookie, pages)
        print("one request with the page cache emptied, in-process, median (max) ms: "
              + "; ".join(f"{k} {v['median_ms']:.1f} ({v['max_ms']:.1f})" for k, v in cold.items()))

        lid = ids[0]
        fresh = [c for c in learner_changes(lid, 1000, plan_text, item_ids, rng) if c["entity"] == "time_entry"]
        t0 = time.perf_counter()
        status, body = push(port, tokens[lid], fresh[0]["device"], fresh)
        sync = {"changes": len(fresh), "seconds": time.perf_counter() - t0, "status": status}
        print(f"one push of {len(fresh)} new changes: {sync['seconds'] * 1000:.0f} ms (HTTP {status})")

        print("\n| page | requests | p50 ms | p99 ms | max ms | req/s | server CPU ms/req | errors |\n"
              "|---|---|---|---|---|---|---|---|")
        for name, r in results.items():
            print(f"| {name} | {r['requests']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} "
                  f"| {r['req_s']:.0f} | {r['server_cpu_ms']:.2f} | {r['errors']} |")
        print(f"\nload average {os.getloadavg()[0]:.2f}; data loaded through the sync push")
        if args.json:
            args.json.write_text(json.dumps({"learners": args.learners, "entries": args.entries,
                                             "clients": args.clients, "seconds": args.seconds,
                                             "load_s": load_s, "pages": results,
                                             "sync_1000": sync, "cold": cold, "loadavg": os.getloadavg()}, indent=1))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if pg_dir is not None:
            subprocess.run(["bash", str(ROOT / "scripts" / "pg.sh"), "stop", str(pg_dir)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
