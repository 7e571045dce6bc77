"""Real vLLM as the oracle for the week-3 labs: the same traces replayed on vLLM 0.32's classes.

vLLM lives in its own venv (vllm_env.py), so the replay runs there as a child process
(`vllm_side.py`), many traces per call, JSON over stdin/stdout: importing vLLM is what takes
time, not the replay. Where that venv is missing, the labs fall back to results
recorded from real vLLM and shipped beside each lab (`python -m zero2vllm.labs._vllm_oracle.record`
makes them), and say so.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
from pathlib import Path

HERE = Path(__file__).parent
SIDE = HERE / "vllm_side.py"
PINNED = "0.32.0"
# "recorded" forces the shipped results even where vLLM is installed (the tool's own tests)
ENV_MODE = "Z2V_LAB_ORACLE"


class OracleError(Exception):
    """vLLM could not replay the traces; the message says why."""


def live_python() -> Path | None:
    """The vLLM venv's python when a finished install of the pinned vLLM is there, else None."""
    if os.environ.get(ENV_MODE) == "recorded":
        return None
    from zero2vllm.realvllm import env as vllm_env

    marker = vllm_env.read_marker()
    python = vllm_env.venv_python()
    if not marker or marker.get("vllm") != PINNED or not python.exists():
        return None
    return python


def why_not_live() -> str:
    if os.environ.get(ENV_MODE) == "recorded":
        return f"(live run off: {ENV_MODE}=recorded)"
    return f"(no vLLM {PINNED} venv here: `z2v vllm install` adds a live run with fresh seeds)"


def replay(kind: str, traces: list[dict], timeout: float = 120.0) -> dict:
    """{"vllm": version, "results": [per-trace step results]} from real vLLM, run live."""
    python = live_python()
    if python is None:
        raise OracleError("no vLLM venv with vLLM " + PINNED)
    from zero2vllm.models import model_cache_dir

    payload = json.dumps({"kind": kind, "traces": traces})
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "ERROR", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",  # no network: nothing is downloaded
           "OMP_NUM_THREADS": "1", "VLLM_TARGET_DEVICE": "cpu",
           # vLLM's cache (what it learnt about the model class) beside the converted models:
           # a check's HOME is thrown away after every run, and redoing it costs seconds
           "VLLM_CACHE_ROOT": os.environ.get("VLLM_CACHE_ROOT") or str(model_cache_dir() / "vllm-cache")}
    env.pop("PYTHONPATH", None)  # zero2vllm's own packages must not shadow vLLM's
    try:
        proc = subprocess.run([str(python), str(SIDE)], input=payload, capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise OracleError(f"vLLM took over {timeout:.0f} s to replay {len(traces)} traces") from None
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise OracleError(f"vLLM's replay failed: {tail}")
    return json.loads(proc.stdout)


def trace_digest(trace: dict) -> str:
    return hashlib.sha256(json.dumps(trace, sort_keys=True).encode()).hexdigest()[:16]


def load_recorded(path: Path, make_trace) -> tuple[str, list[tuple[dict, list]]]:
    """(vLLM version, [(trace, vLLM's results)]) from a recording; traces are rebuilt from their
    seeds and must hash as recorded (else the generator changed and the recording is stale)."""
    data = json.loads(gzip.decompress(path.read_bytes()))
    out = []
    for rec in data["traces"]:
        trace = make_trace(rec["seed"])
        if trace_digest(trace) != rec["digest"]:
            raise OracleError(f"{path.name} is stale (trace generator changed): rerun "
                              "`python -m zero2vllm.labs._vllm_oracle.record`")
        out.append((trace, rec["results"]))
    return data["vllm"], out


def differential(ctx, kind: str, make_trace, recorded: Path, compare, *, live: int, fast: int,
                 timeout: float = 120.0) -> str:
    """The learner's piece against vLLM: every recorded trace, then (where the vLLM venv is)
    LIVE fresh seeded ones (FAST under --fast; $Z2V_LAB_LIVE_TRACES overrides).
    `compare(module, trace, want, source)` raises CheckFailed on the first difference."""
    import random

    from zero2vllm.labs.framework import CheckFailed

    version, traces = load_recorded(Path(recorded), make_trace)
    for trace, want in traces:
        compare(ctx.module, trace, want, f"recorded from vLLM {version}")
    detail = f"{len(traces)} traces recorded from vLLM {version}"
    ctx.metrics["recorded_traces"] = len(traces)
    if live_python() is None:
        ctx.metrics["live_traces"] = 0
        return detail + " " + why_not_live()
    n = int(os.environ.get("Z2V_LAB_LIVE_TRACES") or (fast if ctx.fast else live))
    base = random.Random().randrange(10**6, 10**9)
    fresh = [make_trace(s) for s in range(base, base + n)]
    try:
        answer = replay(kind, fresh, timeout=timeout)
    except OracleError as exc:
        raise CheckFailed(f"could not run vLLM live: {exc}", hint="`z2v vllm doctor` says what is missing")
    for trace, want in zip(fresh, answer["results"]):
        compare(ctx.module, trace, want, f"live vLLM {answer['vllm']}")
    ctx.metrics["live_traces"] = n
    return detail + f", and {n} live on vLLM {answer['vllm']} (seeds {base}..{base + n - 1})"
