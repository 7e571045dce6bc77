"""Run a lab's checks in a sandboxed process with a time limit, and collect what it reports.

The learner's code can hang, crash the interpreter, print megabytes or raise on import: the
child (runner.py) may die in any of those ways, and this side still returns one failed
criterion per problem with the reason, never an exception. The child runs in a sandbox
(sandbox.py) and reports over a pipe; this side believes only lines that carry the run's nonce
in the runner's order (verify.py), and refuses the whole result otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import zero2vllm
from zero2vllm.labs import Lab
from zero2vllm.labs.sandbox import Limits, Sandbox
from zero2vllm.labs.verify import Verifier, expected_plan

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
    refused: str | None = None  # why the child's results were not believed (forged, tampered)
    isolation: str = ""  # which sandbox the check ran in (sandbox.py)

    def as_json(self) -> dict:
        return {"lab": self.lab, "passed": self.passed, "criteria": self.criteria,
                "metrics": self.metrics, "refused": self.refused, "isolation": self.isolation}


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


def _child_env(lab: Lab | None = None, extra: dict | None = None) -> dict:
    env = {**os.environ, **(extra or {})}
    src = str(Path(zero2vllm.__file__).resolve().parent.parent)
    if lab is not None and not lab.package.startswith("zero2vllm."):
        src += os.pathsep + str(lab.import_root)  # a lab outside the package (dev-check's tests)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def _store_paths(db_path: Path | None) -> tuple[list[Path], list[Path]]:
    """(what to hide: the data directory and the database; what stays writable: the model
    cache, which a first check converts the embedded model into)."""
    from zero2vllm.paths import data_dir

    hide = [data_dir()]
    for db in (db_path, os.environ.get("ZERO2VLLM_DB")):
        if db:
            hide.append(Path(db))
    env_cache = os.environ.get("ZERO2VLLM_MODEL_CACHE")
    cache = Path(env_cache).expanduser() if env_cache else data_dir() / "models"
    try:
        cache.mkdir(parents=True, exist_ok=True)  # made here, so a conversion inside persists
    except OSError:
        return hide, []
    return hide, [cache]


def _caches(lab: Lab) -> dict[str, Path]:
    """The caches LAB names (Lab.caches), by the variable that points a tool at it, made so a
    bind can show them in the sandbox at their real path."""
    found = {}
    if "pre-commit" in lab.caches:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(os.environ.get("PRE_COMMIT_HOME") or Path(xdg) / "pre-commit").expanduser()
        try:
            path.mkdir(parents=True, exist_ok=True)
            found["PRE_COMMIT_HOME"] = path
        except OSError:
            pass  # then pre-commit says itself what it cannot write
    return found


def _vllm_venv() -> Path | None:
    """Real vLLM's venv, when there is one (the contribution labs read and run it)."""
    from zero2vllm.realvllm.env import venv_dir

    venv = venv_dir()
    return venv if venv.is_dir() else None


def run_check(
    lab: Lab,
    path: Path,
    *,
    timeout_s: float | None = None,
    fast: bool = False,
    only: list[str] | None = None,
    on_event: Callable[[dict], None] | None = None,
    db_path: Path | None = None,
    inputs: dict | None = None,
    limits: Limits | None = None,
    stop_after: str | None = None,
    env: dict | None = None,
) -> CheckResult:
    """Run LAB's checks on PATH in a sandboxed child process (sandbox.py); `on_event` sees each
    event as it arrives. DB_PATH is the store to hide from it (besides the data directory);
    INPUTS (JSON) is what its checks may need from the store; ENV is added to its environment
    (dev-check's fixture cases: a recorded GitHub replay)."""
    timeout_s = timeout_s or lab.time_limit_s
    path = Path(path).resolve()
    started = time.perf_counter()
    hash_before = files_hash(path)
    hide, writable = _store_paths(db_path)
    caches = _caches(lab)
    readable = [] if lab.package.startswith("zero2vllm.") else [lab.import_root]
    vllm_venv = _vllm_venv()
    if vllm_venv is not None:  # `z2v vllm install`'s venv may be inside the hidden data dir
        readable.append(vllm_venv)
    with Sandbox(path, hide=hide, writable=writable + list(caches.values()), readable=readable, host_network=lab.host_network,
                 limits=limits or Limits()) as box:
        if on_event:
            on_event({"event": "sandbox", "isolation": box.isolation})
        nonce = secrets.token_hex(16)
        events_r, events_w = os.pipe()
        setup_r, setup_w = os.pipe()
        env = box.env(_child_env(lab, env))
        if writable:  # the model cache by its real path: the data directory is hidden
            env.setdefault("ZERO2VLLM_MODEL_CACHE", str(writable[0]))
            # and the engine's C++ kernels beside it: in the throw-away HOME every check built them again
            env.setdefault("ZERO2VLLM_KERNEL_CACHE", str(writable[0] / "kernels"))
        if vllm_venv is not None:  # and vLLM's venv by its real path (HOME is not the user's)
            env.setdefault("ZERO2VLLM_VLLM_VENV", str(vllm_venv))
        env.update({name: str(p) for name, p in caches.items()})
        cmd = [sys.executable, "-m", "zero2vllm.labs.runner", lab.package, "--package", str(path),
               "--events-fd", str(events_w), "--setup-fd", str(setup_r)]
        if fast:
            cmd.append("--fast")
        if only:
            cmd += ["--only", ",".join(only)]
        if stop_after:
            cmd += ["--stop-after", stop_after]
        try:
            proc = subprocess.Popen(
                box.command(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, cwd=str(box.cwd), pass_fds=(events_w, setup_r),
                preexec_fn=box.preexec,  # own session, death signal, cgroup, rlimits
            )
        finally:
            os.close(events_w)
            os.close(setup_r)
        box.started(proc)
        setup = json.dumps({"nonce": nonce, "inputs": inputs or {}}).encode()
        threading.Thread(target=_write_all, args=(setup_w, setup), daemon=True).start()
        tail = _Tail(proc.stdout)
        verifier = Verifier(nonce, path, lab, expected_plan(lab, only))
        reader = _Lines(events_r)
        timed_out = False

        def drain(wait: float) -> None:
            for line in reader.lines(wait):
                event = verifier.accept(line)
                if event is not None and on_event:
                    on_event(event)
            if verifier.refused:
                box.kill()

        while proc.poll() is None and not verifier.refused:
            drain(0.1)
            if time.perf_counter() - started > timeout_s:
                timed_out = True
                box.kill()
                break
        proc.wait()
        box.kill()  # whatever it started ends with it, a normal finish included
        drain(0)
        reader.close()
        output = tail.text()
        if not verifier.refused:
            verifier.finish(proc.returncode)
        if not verifier.refused and files_hash(path) != hash_before:
            verifier.refuse("your files changed while they were being checked")
        isolation = box.isolation
    result = _collect(lab, verifier.events, proc.returncode, timed_out, timeout_s, output)
    if verifier.refused:
        result.passed = False
        result.refused = verifier.refused
        result.criteria = [c if c["name"] in verifier.verified else
                           {**c, "passed": False, "detail": "not counted: the results were refused"}
                           for c in result.criteria]
    result.metrics["seconds"] = verifier.seconds  # timed here, not as the child says
    result.isolation = isolation
    result.duration_s = round(time.perf_counter() - started, 2)
    result.path = str(path)
    result.files_hash = hash_before
    result.output_tail = output
    return result


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass  # the child died before reading its setup: its exit says why
    finally:
        os.close(fd)


class _Lines:
    """Complete lines from a pipe, read without blocking longer than asked."""

    def __init__(self, fd: int):
        self.fd, self.buf, self.eof = fd, b"", False

    def lines(self, wait: float) -> list[bytes]:
        while not self.eof:
            ready, _, _ = select.select([self.fd], [], [], wait)
            if not ready:
                break
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
            self.buf += chunk
            wait = 0
        end = self.buf.rfind(b"\n") + 1
        out, self.buf = self.buf[:end].splitlines(), self.buf[end:]
        if self.eof and self.buf:  # a last line without its newline: keep it for the verifier
            out, self.buf = out + [self.buf], b""
        return out

    def close(self) -> None:
        os.close(self.fd)


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
