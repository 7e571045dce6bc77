"""The child process that runs one lab's checks:
`python -m zero2vllm.labs.runner LAB PATH --events-fd W --setup-fd R`.

It first reads its setup (a per-run nonce and the inputs the checks need) from fd R, closes it,
and only then imports the learner's code. It writes one JSON object per line to the pipe W as
it goes (plan, start, result, metrics, done), each with the nonce and a sequence number, so the
parent (check.py) can show progress, knows what finished if this process hangs, dies or is
killed at the time limit, and refuses lines that did not come from here. Whatever the learner's
code prints goes to stdout/stderr, which the parent drains and keeps only the tail of.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

from zero2vllm.labs import get_lab
from zero2vllm.labs.framework import (
    CheckFailed, Context, criteria_of, describe_exception, entry_file, load_module,
)

IMPORT_CRITERION = "imports"


_INPUTS: dict = {}


def check_inputs() -> dict:
    """What the parent passed in for the checks (e.g. recorded runs: the child has no store)."""
    return _INPUTS


class Events:
    """Event lines on the parent's pipe, each signed with the run's nonce and numbered."""

    def __init__(self, fd: int, nonce: str):
        self.fd, self._nonce, self._seq = fd, nonce, 0

    def emit(self, **event) -> None:
        line = json.dumps({"nonce": self._nonce, "seq": self._seq, **event}, default=str) + "\n"
        self._seq += 1
        data = line.encode()
        while data:  # one event per write where the pipe allows; loop for long ones
            data = data[os.write(self.fd, data):]


def run(lab_id: str, path: str, events: Events, *, fast: bool = False,
        only: list[str] | None = None) -> bool:
    lab = get_lab(lab_id)
    if lab is None:
        raise SystemExit(f"no lab {lab_id!r}")
    checks = importlib.import_module(lab.checks_module)
    criteria = criteria_of(checks.__name__)
    if only:
        criteria = [c for c in criteria if c.name in only]
    names = ([IMPORT_CRITERION] if lab.entry else []) + [c.name for c in criteria]
    events.emit(event="plan", criteria=names, pid=os.getpid())

    target = Path(path).resolve()
    ctx = Context(path=target, fast=fast)
    setup = getattr(checks, "setup", None)
    if setup:
        setup(ctx)  # the lab's own preparation (threads, seeds); not the learner's code
    all_passed = True
    skip_reason = None
    if lab.entry:
        events.emit(event="start", name=IMPORT_CRITERION)
        t0 = time.perf_counter()
        file = entry_file(target, lab.entry)
        root = file.parent
        try:
            ctx.module = load_module(file)
            passed, detail = True, f"imported {file}"
        except CheckFailed as exc:
            passed, detail = False, exc.detail()
        except BaseException as exc:  # noqa: BLE001 - SyntaxError, SystemExit... all are the learner's
            passed, detail = False, describe_exception(exc, root)
        events.emit(event="result", name=IMPORT_CRITERION, passed=passed, detail=detail,
                    seconds=round(time.perf_counter() - t0, 3))
        if not passed:
            all_passed = False
            skip_reason = f"not run: {file.name} did not import"
    else:
        root = target if target.is_dir() else target.parent

    for crit in criteria:
        if skip_reason:
            events.emit(event="result", name=crit.name, passed=False, detail=skip_reason, seconds=0)
            continue
        events.emit(event="start", name=crit.name)
        t0 = time.perf_counter()
        try:
            note = crit.func(ctx)
            passed, detail = True, (str(note) if note is not None else "ok")
        except CheckFailed as exc:
            passed, detail = False, exc.detail()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001
            passed, detail = False, describe_exception(exc, root)
        all_passed &= passed
        events.emit(event="result", name=crit.name, passed=passed, detail=detail,
                    seconds=round(time.perf_counter() - t0, 3))
    events.emit(event="metrics", metrics=ctx.metrics)
    events.emit(event="done", passed=all_passed)
    return all_passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zero2vllm.labs.runner")
    parser.add_argument("lab")
    parser.add_argument("path")
    parser.add_argument("--events-fd", type=int, required=True, help="pipe to write events to")
    parser.add_argument("--setup-fd", type=int, required=True,
                        help="pipe to read {nonce, inputs} from, until EOF")
    parser.add_argument("--fast", action="store_true", help="shorter checks (the tool's own tests)")
    parser.add_argument("--only", default="", help="comma-separated criterion names")
    args = parser.parse_args(argv)
    with os.fdopen(args.setup_fd, "rb") as f:  # read and closed before any learner code runs
        setup = json.loads(f.read() or b"{}")
    # run as __main__, this module is not the one checks import: fill that one's inputs
    importlib.import_module("zero2vllm.labs.runner")._INPUTS.update(setup.get("inputs") or {})
    os.set_inheritable(args.events_fd, False)  # processes the learner starts do not get it
    events = Events(args.events_fd, str(setup.get("nonce", "")))
    del setup
    only = [n.strip() for n in args.only.split(",") if n.strip()] or None
    passed = run(args.lab, args.path, events, fast=args.fast, only=only)
    sys.stdout.flush()
    sys.stderr.flush()
    # Learner code may have left non-daemon threads running; they must not keep us alive.
    os._exit(0 if passed else 1)


if __name__ == "__main__":
    main()
