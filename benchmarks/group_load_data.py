"""The data of benchmarks/group_load.py: 50 learners' local histories as sync protocol changes
(docs/group.md), and, for a server without the sync push, the rows the push would write."""

from __future__ import annotations

import random
import secrets
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TODAY = date.today()


def hex32() -> str:
    return secrets.token_hex(16)


class Clock:
    """The protocol's versions: increasing integers (microseconds)."""

    def __init__(self):
        self.last = 0

    def __call__(self) -> int:
        self.last = max(time.time_ns() // 1000, self.last + 1)
        return self.last


def learner_changes(n: int, entries: int, plan_text: str, item_ids: list[str], rng: random.Random) -> list[dict]:
    """One learner's local history as protocol changes: a plan, time entries over the last 120
    days, item states, notes and lab runs (checks with criteria, training runs, a compare)."""
    clock, device = Clock(), hex32()

    def change(entity, key, row):
        return {"id": hex32(), "entity": entity, "key": key, "version": clock(), "device": device,
                "deleted": False, "row": row}

    start = TODAY - timedelta(days=TODAY.weekday()) - timedelta(weeks=rng.randrange(1, 10))
    out = [change("plan", "1", {"source_text": plan_text + f"\n(learner {n})\n", "source_name": "plan.txt",
                                "imported_at": f"{start.isoformat()}T09:00:00+00:00",
                                "start_date": start.isoformat()})]
    quiet = rng.random() < 0.2  # some learners stopped logging a while ago
    for _ in range(entries):
        day = TODAY - timedelta(days=rng.randrange(8 if quiet else 0, 120))
        uid = hex32()
        out.append(change("time_entry", uid, {
            "uid": uid, "item_id": rng.choice(item_ids), "day": day.isoformat(),
            "seconds": rng.randrange(300, 5400), "started_at": None, "ended_at": None,
            "note": rng.choice([None, "", "reading", "stuck on the mask"]), "source": "log",
            "created_at": f"{day.isoformat()}T20:00:00+00:00"}))
    for item in rng.sample(item_ids, min(30, len(item_ids))):
        out.append(change("item_state", item, {"item_id": item, "status": rng.choice(["done", "in_progress", "skipped"]),
                                               "progress_done": None, "progress_total": None,
                                               "progress_unit": None, "updated_at": "2026-11-20T10:00:00+00:00"}))
        out.append(change("note", item, {"item_id": item, "text": f"note on {item}", "updated_at": "2026-11-20T10:00:00+00:00"}))
    criteria = ["imports", "shapes", "causal mask", "loss decreases", "val loss under the bar", "no leakage"]
    for lab in ("transformer", "block_pool", "scheduler", "kv_cache"):
        for k in range(rng.randrange(1, 8)):
            passed = rng.random() < 0.3
            crit = [{"name": c, "passed": passed or rng.random() < 0.6, "detail": "..."} for c in criteria]
            out.append(run(change, lab, "check", passed, crit, {}))
    for k in range(rng.randrange(0, 4)):
        out.append(run(change, "transformer", "run", True, [], {
            "val_loss": round(rng.uniform(1.45, 1.9), 4), "train_seconds": round(rng.uniform(10, 90), 1),
            "preset": "gpu", "device": "cuda", "steps": 700}))
    out.append(run(change, "vllm", "compare", True, [], {
        "concurrency": [1, 8, 32], "engine_output_tok_s": [rng.uniform(50, 200) for _ in range(3)],
        "vllm_output_tok_s": [rng.uniform(200, 2000) for _ in range(3)], "speedup_at_max": rng.uniform(2, 9),
        "table_text": "x" * 2000}))
    return out


def run(change, lab, kind, passed, criteria, metrics):
    uid = hex32()
    return change("lab_run", uid, {"uid": uid, "lab": lab, "kind": kind, "at": "2026-11-25T10:00:00+00:00",
                                   "passed": passed, "duration_s": 12.0, "code_path": None, "files_hash": None,
                                   "criteria": criteria, "metrics": metrics, "artifacts": [], "refused": None,
                                   "isolation": None})
