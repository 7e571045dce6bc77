"""The servers compare starts itself on free ports (the naive API, real vLLM, the mini engine),
and the checks it makes before measuring any of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from .targets import CompareConfig, CompareError, ENGINE, NAIVE, Target, VLLM, _get, detect_api


# -- the servers we start ------------------------------------------------------------------------
class ChildServer:
    """A server compare starts itself (`z2v serve naive` or `z2v serve engine`): a child process
    group on a free port, its log in a file, stopped with Ctrl-C like a person would."""

    def __init__(self, kind: str, model: str, port: int, log_path: Path, echo: Callable[[str], None]):
        self.kind, self.model, self.port, self.log_path, self.echo = kind, model, port, log_path, echo
        self.label = {NAIVE: "the naive API", ENGINE: "zero2vllm's engine"}[kind]
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float) -> float:
        from zero2vllm.realvllm.serve import _set_pdeathsig

        cmd = [sys.executable, "-m", "zero2vllm", "serve", self.kind, "--model", self.model,
               "--port", str(self.port), "--host", "127.0.0.1"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.echo(f"starting {self.label} on {self.url} (log: {self.log_path})")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                         preexec_fn=_set_pdeathsig)
        started = time.perf_counter()
        while True:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-10:]
                raise CompareError(f"{self.label} exited with code {self.proc.returncode} while "
                                   "starting; last lines of its log:\n    " + "\n    ".join(tail))
            if _get(self.url + "/health") is not None:
                return time.perf_counter() - started
            if time.perf_counter() - started > timeout_s:
                self.stop()
                raise CompareError(f"{self.label} was not healthy after {timeout_s:.0f} s; "
                                   f"see {self.log_path}")
            time.sleep(0.5)

    def stop(self) -> None:
        from zero2vllm.realvllm.serve import _group_alive, _signal_group

        if self.proc is None:
            return
        pgid = self.proc.pid
        if self.proc.poll() is None:
            _signal_group(pgid, signal.SIGINT)  # both servers stop on KeyboardInterrupt
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(pgid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)


# -- the comparison ------------------------------------------------------------------------------


# -- the comparison ------------------------------------------------------------------------------
def preflight(targets: list[Target], cfg: CompareConfig) -> None:
    """Fail before minutes of benchmarking when a target cannot work at all."""
    for t in targets:
        if t.kind == VLLM:
            from zero2vllm.realvllm import env as vllm_env

            if not vllm_env.is_installed():
                raise CompareError("vLLM is not installed: run `z2v vllm install` first, or give a "
                                   "running server with --vllm URL (or --no-vllm)")
        if t.kind in (NAIVE, VLLM, ENGINE):
            from zero2vllm.models import ModelError, ensure_model_dir

            try:
                ensure_model_dir(cfg.model)
            except ModelError as exc:
                raise CompareError(str(exc)) from None
        elif t.api == "?":
            t.api = detect_api(t.url)
