"""waitress or gunicorn for the group server: the same app under each, side by side in one run.

Starts a throw-away PostgreSQL (scripts/pg.sh) unless --db names one, makes a database with one
account and an API token, then for each server in turn (and again, --rounds times, interleaved,
so background load hits each alike) starts it as its own process on a free loopback port and
drives it with --clients concurrent clients (keep-alive connections, spread over 4 client
processes so the client is not held back by one GIL) for --seconds per endpoint:
`GET /api/v1/me` (a token lookup and an UPDATE: one transaction) and `GET /group/login`
(a template and a cookie). Prints req/s, p50, p99 and the server's CPU time per request
(its process and workers, from /proc) per server and endpoint.

    PYTHONPATH=src python benchmarks/group_wsgi.py [--db URL] [--clients 20] [--seconds 8]
        [--rounds 2] [--markdown]

Needs gunicorn beside the group extra (`pip install gunicorn`); the server itself does not.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

CLIENT_PROCESSES = 4
# name -> argv (PORT is filled in); every server gets 8 request threads in all, on 2 cores.
SERVERS = {
    "waitress, 1 process x 8 threads": [sys.executable, "-m", "zero2vllm", "serve", "group",
                                        "--port", "PORT", "--threads", "8"],
    "gunicorn gthread, 2 workers x 4 threads": [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "2",
                                                "--threads", "4", "-b", "127.0.0.1:PORT", "--log-level", "warning",
                                                "zero2vllm.group.server:app_from_env()"],
    "gunicorn sync, 8 workers": [sys.executable, "-m", "gunicorn", "-w", "8", "-b", "127.0.0.1:PORT",
                                 "--log-level", "warning", "zero2vllm.group.server:app_from_env()"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_db(server_url: str) -> tuple[str, str]:
    """A fresh database with one learner; (its URL, an API token)."""
    import psycopg

    from zero2vllm.group import auth, db

    name = "wsgi_" + uuid.uuid4().hex[:8]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server_url.rsplit("/", 1)[0] + "/" + name
    with db.connect(url) as conn:
        db.migrate(conn)
        account = auth.create_account(conn, "bench@example.org", "Bench", "learner", "benchmark-pass")
        token = auth.issue_token(conn, account, "bench")
    return url, token


def client(args) -> list[float]:
    """One client process: THREADS keep-alive connections, each sending GETs until DEADLINE."""
    port, path, headers, deadline, threads = args
    import threading

    out: list[float] = []

    def one():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.time() < deadline:
            t0 = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                conn.close()
                ok = False
            out.append((time.perf_counter() - t0) if ok else float("nan"))

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return out


def drive(port: int, path: str, headers: dict, clients: int, seconds: float) -> list[float]:
    per = [clients // CLIENT_PROCESSES + (i < clients % CLIENT_PROCESSES) for i in range(CLIENT_PROCESSES)]
    deadline = time.time() + seconds
    with multiprocessing.Pool(CLIENT_PROCESSES) as pool:
        parts = pool.map(client, [(port, path, headers, deadline, n) for n in per if n])
    return [x for part in parts for x in part]


def wait_up(port: int, proc: subprocess.Popen) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of PID and its child processes (gunicorn's workers), from /proc:
    a measure a machine shared with other jobs inflates much less than wall time."""
    total, pids = 0.0, [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        pids += [int(c) for c in task.read_text().split()]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", help="a PostgreSQL server URL (default: start one with scripts/pg.sh)")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if importlib.util.find_spec("gunicorn") is None:
        raise SystemExit("this benchmark compares with gunicorn: pip install gunicorn")
    pg_dir = None
    if args.db:
        server_url = args.db
    else:
        pg_dir = tempfile.mkdtemp(prefix="z2v-wsgi-pg-", dir="/tmp")
        os.chmod(pg_dir, 0o755)
        server_url = subprocess.run(["bash", str(ROOT / "scripts/pg.sh"), "start", pg_dir], check=True,
                                    capture_output=True, text=True).stdout.strip()
    try:
        url, token = setup_db(server_url)
        secret = Path(tempfile.mkdtemp()) / "secret"
        env = dict(os.environ, ZERO2VLLM_GROUP_DB=url, ZERO2VLLM_GROUP_SECRET_FILE=str(secret),
                   PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        endpoints = {"GET /api/v1/me": ("/api/v1/me", {"Authorization": f"Bearer {token}"}),
                     "GET /group/login": ("/group/login", {})}
        results: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for name, argv in SERVERS.items():
                port = free_port()
                proc = subprocess.Popen([a.replace("PORT", str(port)) for a in argv], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                try:
                    wait_up(port, proc)
                    for label, (path, headers) in endpoints.items():
                        drive(port, path, headers, args.clients, 1.0)  # warm-up: pools, imports
                        cpu0 = cpu_seconds(proc.pid)
                        lat = drive(port, path, headers, args.clients, args.seconds)
                        cpu.setdefault((name, label), []).append(cpu_seconds(proc.pid) - cpu0)
                        results.setdefault((name, label), []).extend(lat)
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
        load = os.getloadavg()[0]
        rows = []
        for (name, label), xs in results.items():
            lat = [x for x in xs if x == x]
            rows.append((label, name, len(lat) / (args.seconds * args.rounds), 1000 * statistics.median(lat),
                         1000 * pct(lat, 0.99), 1000 * sum(cpu[name, label]) / max(1, len(lat)),
                         len(xs) - len(lat)))
        rows.sort()
        if args.markdown:
            print(f"| endpoint | server | req/s | p50 ms | p99 ms | server CPU ms/req | errors |  # {args.clients} "
                  f"clients, {args.rounds} x {args.seconds:g} s each, load {load:.1f}")
            print("|---|---|---|---|---|---|---|")
            for r in rows:
                print(f"| `{r[0]}` | {r[1]} | {r[2]:.0f} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.2f} | {r[6]} |")
        else:
            print(f"{args.clients} clients, {args.rounds} rounds x {args.seconds:g} s, load average {load:.1f}")
            print(f"{'endpoint':18} {'server':42} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>10} {'errors':>6}")
            for r in rows:
                print(f"{r[0]:18} {r[1]:42} {r[2]:7.0f} {r[3]:8.1f} {r[4]:8.1f} {r[5]:10.2f} {r[6]:6d}")
    finally:
        if pg_dir:
            subprocess.run(["bash", str(ROOT / "scripts/pg.sh"), "stop", pg_dir], check=False)


if __name__ == "__main__":
    main()
