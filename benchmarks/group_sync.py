"""How long one sync of 1,000 new local changes takes, end to end, against a group server
(waitress in a subprocess, PostgreSQL on this machine), and what the sync triggers cost a write.

    python benchmarks/group_sync.py --db postgresql://.../DB [--runs 5]

The database should be a scratch one (the benchmark creates accounts in it). Per run: a fresh
store catches up (untimed), logs 1,000 time entries (one transaction), then `sync` pushes them
(one batch) and pulls what is new; a second store, caught up before, then pulls the 1,000. Also times 1,000 single-entry `log_time`
calls (one transaction each, as `z2v log` does) on a store at schema 6 (no triggers) and at the
current schema.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SERVER = """
import sys, waitress
from zero2vllm.group.app import create_app
waitress.serve(create_app(sys.argv[1], pool_size=4), host="127.0.0.1", port=int(sys.argv[2]), threads=4,
               _quiet=True)
"""


def start_server(db: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", SERVER, db, str(port)])
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the server did not start")


def write_cost(where: Path, schema: int | None, n: int) -> float:
    from zero2vllm.tracker.store import Store

    store = Store.open(where / f"w{schema}.db", migrate_to=schema)
    t = time.perf_counter()
    for i in range(n):
        store.log_time(f"w1.i{i % 20}", "2026-11-30", 60 + i, "log")
    store.close()
    return (time.perf_counter() - t) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=os.environ.get("ZERO2VLLM_GROUP_DB"), required=not os.environ.get("ZERO2VLLM_GROUP_DB"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--changes", type=int, default=1000)
    args = ap.parse_args()

    from zero2vllm.group import auth, db
    from zero2vllm.group.client import sync
    from zero2vllm.tracker.store import Store

    with db.connect(args.db) as conn:
        db.migrate(conn)
        lid = auth.create_account(conn, f"bench-{uuid.uuid4().hex[:8]}@example.org", "bench", "learner", "pw")
        token = auth.issue_token(conn, lid, "bench")
    proc, url = start_server(args.db)
    config = {"url": url, "token": token, "learner": {"id": lid}}
    where = Path(tempfile.mkdtemp())
    pushes, pulls = [], []
    try:
        for run in range(args.runs):
            a, b = Store.open(where / f"a{run}.db"), Store.open(where / f"b{run}.db")
            sync(a, config)  # both stores catch up on earlier runs first, untimed
            sync(b, config)
            with a.transaction():
                for i in range(args.changes):
                    a.add_entry(f"w1.i{i % 50}", f"2026-11-{1 + i % 28:02d}", 60 + i, note="n")
            t = time.perf_counter()
            out = sync(a, config, batch=args.changes)
            pushes.append(time.perf_counter() - t)
            assert out["pushed"] == args.changes, out
            t = time.perf_counter()
            out = sync(b, config, batch=args.changes)
            pulls.append(time.perf_counter() - t)
            assert out["applied"] == args.changes, out
    finally:
        proc.kill()
    write_old, write_new = write_cost(where, 6, 1000), write_cost(where, None, 1000)
    load = os.getloadavg()[0]
    print(f"{args.changes} changes, {args.runs} runs, {os.cpu_count()} CPUs, load average {load:.1f}")
    print(f"{'measure':58} {'median':>9} {'max':>9}")
    print(f"{'sync of 1,000 new changes (push, then pull), ms':58} {statistics.median(pushes) * 1e3:9.0f} {max(pushes) * 1e3:9.0f}")
    print(f"{'sync of another machine pulling the 1,000, ms':58} {statistics.median(pulls) * 1e3:9.0f} {max(pulls) * 1e3:9.0f}")
    print(f"{'one log_time, schema 6 (no sync triggers), ms':58} {write_old:9.2f}")
    print(f"{'one log_time, with the sync triggers, ms':58} {write_new:9.2f}")


if __name__ == "__main__":
    main()
