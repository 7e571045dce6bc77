"""How long `z2v status` takes from a cold process with 10,000 time entries in the store.

    python benchmarks/status_latency.py [--entries 10000] [--runs 30]

Each run is a new `python -m zero2vllm status` process (what a user's shell does), timed wall clock
from spawn to exit, output to a pipe, after one untimed warm-up run. Also times `python -c pass` as
the floor of any Python command. PYTHONDONTWRITEBYTECODE is removed from the children's environment
(some sandboxes set it): a user's Python caches bytecode, and without it every run recompiles our
modules (+30 ms here).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path


def fill(home: Path, entries: int) -> None:
    from zero2vllm.tracker import progress
    from zero2vllm.tracker.store import Store

    store = Store.open(home / "zero2vllm.db")
    plan = progress.load_plan(store)
    store.set_start_date(progress.monday_of(date.today() - timedelta(days=35)).isoformat())
    ids = [i.id for i in plan.items()]
    rng = random.Random(0)
    with store.transaction():
        for _ in range(entries):
            day = date.today() - timedelta(days=rng.randrange(0, 60))
            store.add_entry(rng.choice(ids), day.isoformat(), rng.randrange(60, 3600), source="bench")
    store.close()


def time_command(args: list[str], env: dict, runs: int) -> list[float]:
    subprocess.run(args, env=env, stdout=subprocess.DEVNULL, check=True)  # warm-up: caches, .pyc
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(args, env=env, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ZERO2VLLM_HOME": tmp, "NO_COLOR": "1"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["ZERO2VLLM_HOME"] = tmp
        fill(Path(tmp), args.entries)
        py = [sys.executable]
        rows = [
            ("python -c pass", time_command(py + ["-c", "pass"], env, args.runs)),
            ("z2v status", time_command(py + ["-m", "zero2vllm", "status"], env, args.runs)),
            ("z2v status --json", time_command(py + ["-m", "zero2vllm", "status", "--json"], env, args.runs)),
            ("z2v week 1", time_command(py + ["-m", "zero2vllm", "week", "1"], env, args.runs)),
        ]
    load = os.getloadavg()[0]
    print(f"{args.entries} time entries, {args.runs} cold runs each, {os.cpu_count()} CPUs, "
          f"load average {load:.1f}")
    print(f"{'command':<20} {'median ms':>10} {'p90 ms':>8} {'max ms':>8}")
    for name, t in rows:
        t = sorted(t)
        p90 = t[int(0.9 * (len(t) - 1))]
        print(f"{name:<20} {statistics.median(t) * 1000:>10.1f} {p90 * 1000:>8.1f} {max(t) * 1000:>8.1f}")


if __name__ == "__main__":
    main()
