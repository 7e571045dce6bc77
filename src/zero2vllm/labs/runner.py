"""The child process that runs one lab's checks: `python -m zero2vllm.labs.runner LAB PATH --out F`.

It writes one JSON object per line to F as it goes (plan, start, result, metrics, done), so the
parent (check.py) can show progress and still knows what finished if this process hangs, dies
or is killed at the time limit. Whatever the learner's code prints goes to stdout/stderr,
which the parent drains and keeps only the tail of.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

from zero2vllm.labs import Lab, get_lab, load_lab
from zero2vllm.labs.framework import (
    CheckFailed, CheckWarning, Context, criteria_of, describe_exception, entry_file,
    exception_cause, load_module,
)

IMPORT_CRITERION = "imports"


class Events:
    def __init__(self, path: str):
        self.file = open(path, "a", encoding="utf-8")

    def emit(self, **event) -> None:
        self.file.write(json.dumps(event, default=str) + "\n")
        self.file.flush()


def judge(func, ctx: Context, root: Path) -> dict:
    """Run one criterion: {"passed", "status" (pass, fail, warn), "detail"[, "cause"]}."""
    try:
        note = func(ctx)
        return {"passed": True, "status": "pass", "detail": str(note) if note is not None else "ok"}
    except CheckWarning as exc:
        return {"passed": True, "status": "warn", "detail": exc.detail()}
    except CheckFailed as exc:
        return {"passed": False, "status": "fail", "detail": exc.detail()}
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - SyntaxError, SystemExit... all are the learner's
        out = {"passed": False, "status": "fail", "detail": describe_exception(exc, root)}
        cause = exception_cause(exc, root)
        if cause:
            out["cause"] = cause
        return out


def run(lab_id: str | Lab, path: str, events: Events, *, fast: bool = False,
        only: list[str] | None = None, inputs: dict | None = None,
        stop_after: str | None = None) -> bool:
    """Run LAB's criteria on PATH, emitting events. `stop_after`: once that criterion has
    failed, report the rest "not run" (dev-check needs nothing after it); a pass goes on."""
    lab = lab_id if isinstance(lab_id, Lab) else get_lab(lab_id)
    if lab is None:
        raise SystemExit(f"no lab {lab_id!r}")
    checks = importlib.import_module(lab.checks_module)
    criteria = criteria_of(checks)
    if only:
        criteria = [c for c in criteria if c.name in only]
    names = ([IMPORT_CRITERION] if lab.entry else []) + [c.name for c in criteria]
    events.emit(event="plan", criteria=names, pid=os.getpid())

    target = Path(path).resolve()
    ctx = Context(path=target, fast=fast, inputs=dict(inputs or {}))
    setup = getattr(checks, "setup", None)
    if setup:
        setup(ctx)  # the lab's own preparation (threads, seeds); not the learner's code
    status: dict[str, str] = {}  # criterion -> pass, fail, warn, not run
    if lab.entry:
        events.emit(event="start", name=IMPORT_CRITERION)
        t0 = time.perf_counter()
        file = entry_file(target, lab.entry)
        root = file.parent

        def do_import(_ctx):
            ctx.module = load_module(file)
            return f"imported {file}"

        result = judge(do_import, ctx, root)
        status[IMPORT_CRITERION] = result["status"]
        events.emit(event="result", name=IMPORT_CRITERION, **result,
                    seconds=round(time.perf_counter() - t0, 3))
    else:
        root = target if target.is_dir() else target.parent

    for crit in criteria:
        if stop_after and status.get(stop_after) in ("fail", "not run"):
            status[crit.name] = "not run"
            events.emit(event="result", name=crit.name, passed=False, status="not run",
                        detail=f"not run: stopped after {stop_after!r} failed", seconds=0)
            continue
        if status.get(IMPORT_CRITERION) == "fail":
            blocked = [IMPORT_CRITERION]
            reason = f"not run: {entry_file(target, lab.entry).name} did not import"
        else:
            blocked = [n for n in crit.needs if status.get(n, "pass") in ("fail", "not run")]
            reason = f"not run: needs {', '.join(repr(n) for n in blocked)}"
        if blocked:
            status[crit.name] = "not run"
            events.emit(event="result", name=crit.name, passed=False, status="not run",
                        detail=reason, blocked_by=blocked, seconds=0)
            continue
        events.emit(event="start", name=crit.name)
        t0 = time.perf_counter()
        result = judge(crit.func, ctx, root)
        status[crit.name] = result["status"]
        events.emit(event="result", name=crit.name, **result,
                    seconds=round(time.perf_counter() - t0, 3))
    events.emit(event="metrics", metrics=ctx.metrics)
    all_passed = all(s in ("pass", "warn") for s in status.values())
    events.emit(event="done", passed=all_passed)
    return all_passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zero2vllm.labs.runner")
    parser.add_argument("lab", help="a lab id, or with --package the lab's package")
    parser.add_argument("--package", action="store_true", help="LAB is a package to import")
    parser.add_argument("path")
    parser.add_argument("--out", required=True, help="file to append JSON-lines events to")
    parser.add_argument("--fast", action="store_true", help="shorter checks (the tool's own tests)")
    parser.add_argument("--only", default="", help="comma-separated criterion names")
    parser.add_argument("--stop-after", help="stop once this criterion has failed (dev-check)")
    parser.add_argument("--inputs", help="JSON file of what the checks need from outside "
                                         "(the parent reads the store; this process never does)")
    args = parser.parse_args(argv)
    events = Events(args.out)
    only = [n.strip() for n in args.only.split(",") if n.strip()] or None
    inputs = None
    if args.inputs:
        with open(args.inputs, encoding="utf-8") as f:
            inputs = json.load(f)
    lab = load_lab(args.lab) if args.package else args.lab
    passed = run(lab, args.path, events, fast=args.fast, only=only, inputs=inputs,
                 stop_after=args.stop_after)
    sys.stdout.flush()
    sys.stderr.flush()
    # Learner code may have left non-daemon threads running; they must not keep us alive.
    os._exit(0 if passed else 1)


if __name__ == "__main__":
    main()
