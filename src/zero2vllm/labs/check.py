"""Run a lab's checks in a separate process with a time limit, and collect what it reports.

The learner's code can hang, crash the interpreter, print megabytes or raise on import: the
child (runner.py) may die in any of those ways, and this side still returns one failed
criterion per problem with the reason, never an exception.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import zero2vllm
from zero2vllm.labs import Lab

OUTPUT_TAIL = 4000  # characters of the learner's printed output kept for the report


@dataclass
class CheckResult:
    lab: str
    passed: bool
    criteria: list[dict]  # {"name", "passed", "detail"}
    metrics: dict = field(default_factory=dict)
    duration_s: float = 0.0
    path: str = ""
    files_hash: str | None = None
    output_tail: str = ""
    timed_out: bool = False

    def as_json(self) -> dict:
        return {"lab": self.lab, "passed": self.passed, "criteria": self.criteria,
                "metrics": self.metrics}


class _Tail:
    """Drains a pipe so the child never blocks on a full pipe, keeping the last characters."""

    def __init__(self, stream):
        self.stream, self.buf, self.total = stream, b"", 0
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        for chunk in iter(lambda: self.stream.read1(65536), b""):
            self.total += len(chunk)
            self.buf = (self.buf + chunk)[-OUTPUT_TAIL:]

    def text(self) -> str:
        self.thread.join(timeout=2)
        text = self.buf.decode("utf-8", "replace")
        if self.total > OUTPUT_TAIL:
            text = f"[... {self.total - OUTPUT_TAIL} earlier bytes of output cut ...]\n" + text
        return text


def _child_env(lab: Lab | None = None) -> dict:
    env = dict(os.environ)
    src = str(Path(zero2vllm.__file__).resolve().parent.parent)
    if lab is not None and not lab.package.startswith("zero2vllm."):
        src += os.pathsep + str(lab.import_root)  # a lab outside the package (dev-check's tests)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def run_check(
    lab: Lab,
    path: Path,
    *,
    timeout_s: float | None = None,
    fast: bool = False,
    only: list[str] | None = None,
    on_event: Callable[[dict], None] | None = None,
    inputs: dict | None = None,
    stop_after: str | None = None,
) -> CheckResult:
    """Run LAB's checks on PATH in a child process; `on_event` sees each event as it arrives."""
    timeout_s = timeout_s or lab.time_limit_s
    path = Path(path).resolve()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="z2v-check-") as tmp:
        events_file = Path(tmp) / "events.jsonl"
        events_file.touch()
        cmd = [sys.executable, "-m", "zero2vllm.labs.runner", lab.package, "--package", str(path),
               "--out", str(events_file)]
        if fast:
            cmd.append("--fast")
        if only:
            cmd += ["--only", ",".join(only)]
        if stop_after:
            cmd += ["--stop-after", stop_after]
        if inputs:  # what the checks need from the store, read here: the child never opens it
            inputs_file = Path(tmp) / "inputs.json"
            inputs_file.write_text(json.dumps(inputs, default=str), encoding="utf-8")
            cmd += ["--inputs", str(inputs_file)]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=_child_env(lab), cwd=str(path if path.is_dir() else path.parent),
            start_new_session=True,  # its own process group: a timeout kills learner children too
        )
        tail = _Tail(proc.stdout)
        events: list[dict] = []
        offset = 0
        timed_out = False

        def drain() -> None:
            nonlocal offset
            with open(events_file, "rb") as f:
                f.seek(offset)
                data = f.read()
            end = data.rfind(b"\n") + 1  # only complete lines
            offset += end
            for line in data[:end].splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                events.append(event)
                if on_event:
                    on_event(event)

        while proc.poll() is None:
            drain()
            if time.perf_counter() - started > timeout_s:
                timed_out = True
                _kill(proc)
                break
            time.sleep(0.1)
        proc.wait()
        drain()
        output = tail.text()
    result = _collect(lab, events, proc.returncode, timed_out, timeout_s, output)
    result.duration_s = round(time.perf_counter() - started, 2)
    result.path = str(path)
    result.files_hash = files_hash(path)
    result.output_tail = output
    return result


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _collect(lab: Lab, events: list[dict], returncode: int | None, timed_out: bool,
             timeout_s: float, output: str) -> CheckResult:
    plan = next((e["criteria"] for e in events if e.get("event") == "plan"), None)
    results = {e["name"]: e for e in events if e.get("event") == "result"}
    started = [e["name"] for e in events if e.get("event") == "start"]
    metrics: dict = {}
    for e in events:
        if e.get("event") == "metrics":
            metrics.update(e.get("metrics") or {})
    done = any(e.get("event") == "done" for e in events)
    last_output = "\n".join(output.strip().splitlines()[-15:])

    if plan is None:  # the runner died before saying anything: the tool or the environment
        detail = f"the check process exited with code {returncode} before running any check"
        if timed_out:
            detail = f"the check process did not start within {timeout_s:.0f} s"
        if last_output:
            detail += "\noutput:\n" + last_output
        return CheckResult(lab.id, False, [{"name": "checks ran", "passed": False,
                                            "detail": detail}], metrics, timed_out=timed_out)

    running = next((n for n in reversed(started) if n not in results), None)
    criteria = []
    for name in plan:
        if name in results:
            r = results[name]
            criteria.append({"name": name, "passed": bool(r["passed"]), "detail": r["detail"],
                             **{k: r[k] for k in ("status", "cause", "blocked_by") if k in r}})
            if "seconds" in r:
                metrics.setdefault("seconds", {})[name] = r["seconds"]
        elif name == running:
            if timed_out:
                detail = (f"did not finish: the whole check has a {timeout_s:.0f} s limit and "
                          f"was stopped while running this")
                if name == "imports":
                    detail += ("\nhint: does your file train or loop at import time? Put that "
                               "under `if __name__ == \"__main__\":`")
                else:
                    detail += "\nhint: look for an endless loop or very slow code in what this checks"
            else:
                detail = f"the check process died (exit code {returncode}) while running this"
                if returncode is not None and returncode < 0:
                    detail += f" (killed by signal {-returncode})"
                detail += "\nhint: does your code call sys.exit/os._exit, or crash the interpreter?"
            if last_output:
                detail += "\nlast output:\n" + last_output
            criteria.append({"name": name, "passed": False, "detail": detail})
        else:
            reason = "the time limit was reached first" if timed_out else "the check process died first"
            criteria.append({"name": name, "passed": False, "detail": f"not run: {reason}"})
    passed = done and bool(criteria) and all(c["passed"] for c in criteria)
    return CheckResult(lab.id, passed, criteria, metrics, timed_out=timed_out)


def files_hash(path: Path) -> str | None:
    """sha256 over the checked source files (names and contents), to tie evidence to code."""
    path = Path(path)
    if path.is_file():
        files = [path]
        base = path.parent
    elif path.is_dir():
        base = path
        files = []
        for f in sorted(path.rglob("*")):
            rel = f.relative_to(path).parts
            if any(p.startswith(".") or p in ("__pycache__", "venv", "node_modules") for p in rel):
                continue
            if f.is_file() and f.suffix in (".py", ".txt", ".md", ".toml", ".json", ".yaml", ".yml"):
                if f.stat().st_size <= 2_000_000:
                    files.append(f)
            if len(files) >= 500:
                break
    else:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(base)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()
