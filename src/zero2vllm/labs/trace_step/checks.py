"""The trace-step lab's criteria. driver.py runs vLLM offline in vLLM's venv with the learner's
hook called after every Scheduler.schedule(); next to each hook record it keeps what the
scheduler and its KV cache manager say (total tokens, tokens per request, each request's
block ids), and the criteria compare the two. The last criterion runs zero2vllm's engine on
the same prompts (kept in the model cache: compare.engine_trace) and says what is the same and
what differs."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import tempfile
from pathlib import Path

from zero2vllm.contrib import vllmsrc
from zero2vllm.models import model_cache_dir
from zero2vllm.labs.framework import CheckFailed, criterion
from zero2vllm.labs.trace_step.compare import (
    PROMPTS, describe, describe_blocks, engine_blocks, engine_schedule, engine_trace, vllm_blocks,
    vllm_schedule,
)

DRIVER = Path(__file__).with_name("driver.py")
RUN_TIMEOUT_S = 600


def _steps(ctx) -> list[dict]:
    if "run" not in ctx.state:
        raise CheckFailed("not run: needs 'vLLM run'")
    return ctx.state["run"]["steps"]


def _records(ctx) -> list[tuple[int, dict, dict]]:
    """(step number, vLLM's truth, the hook's record) once every step has a record."""
    if not ctx.state.get("hook ok"):
        raise CheckFailed("not run: needs 'hook records every step'")
    return [(i + 1, s["truth"], s["hook"]) for i, s in enumerate(_steps(ctx))]


@criterion("hook.py")
def hook_file(ctx):
    folder = ctx.path if ctx.path.is_dir() else ctx.path.parent
    path = folder / "hook.py"
    if not path.is_file():
        raise CheckFailed(f"no {path}", hint="`z2v lab init trace-step` writes one to fill in")
    try:
        tree = ast.parse(path.read_text())
    except SyntaxError as exc:
        raise CheckFailed(f"hook.py has a syntax error at line {exc.lineno}: {exc.msg}") from None
    if not any(isinstance(n, ast.FunctionDef) and n.name == "on_step" for n in tree.body):
        raise CheckFailed("hook.py defines no on_step(scheduler_output)")
    ctx.state["hook"] = path
    return str(path)


@criterion("vLLM run")
def vllm_run(ctx):
    if "hook" not in ctx.state:
        raise CheckFailed("not run: needs 'hook.py'")
    try:
        inst = vllmsrc.installed(ctx.inputs.get("contrib"))
        from zero2vllm.realvllm.serve import ServeError, model_folder

        model = model_folder("smollm2")
    except vllmsrc.SourceError as exc:
        raise CheckFailed(str(exc)) from None
    except ServeError as exc:
        raise CheckFailed(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="z2v-trace-") as tmp:
        out = Path(tmp) / "trace.json"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # vLLM's venv, untouched
        # vLLM's own cache (what it learnt about the model class, ~7 s to redo) beside the
        # converted models: the check's HOME is thrown away after every run
        env.setdefault("VLLM_CACHE_ROOT", str(model_cache_dir() / "vllm-cache"))
        try:
            proc = subprocess.run([inst.python, str(DRIVER), str(ctx.state["hook"]), str(model), str(out),
                                   json.dumps(PROMPTS)], capture_output=True, text=True, env=env,
                                  timeout=RUN_TIMEOUT_S, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"the vLLM run did not finish in {RUN_TIMEOUT_S} s") from None
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
            raise CheckFailed(f"the vLLM run failed (exit {proc.returncode})", got=tail,
                              hint="does hook.py import at all? It runs in vLLM's venv")
        run = json.loads(out.read_text())
    ctx.state["run"] = run
    ctx.metrics.update(vllm_version=inst.version, steps=len(run["steps"]),
                       prompt_tokens=[r["prompt_tokens"] for r in run["requests"]])
    return f"vLLM {inst.version}: {len(run['requests'])} requests in {len(run['steps'])} steps"


@criterion("hook records every step")
def every_step(ctx):
    steps = _steps(ctx)
    for i, s in enumerate(steps, 1):
        if s["error"]:
            raise CheckFailed(f"your hook raised at step {i}: {s['error']}")
        rec = s["hook"]
        if not isinstance(rec, dict) or not {"total", "tokens", "blocks"} <= set(rec):
            raise CheckFailed(f"step {i}: on_step returned {str(rec)[:120]}",
                              expected='{"total": int, "tokens": {req_id: int}, "blocks": {req_id: [int]}}')
    ctx.state["hook ok"] = True
    return f"{len(steps)} steps recorded"


@criterion("tokens add up")
def tokens(ctx):
    for i, truth, rec in _records(ctx):
        mine = {str(k): v for k, v in rec["tokens"].items()}
        if sum(mine.values()) != rec["total"]:
            raise CheckFailed(f"step {i}: your per-request tokens add up to {sum(mine.values())}, "
                              f"your total is {rec['total']}")
        if rec["total"] != truth["total"] or mine != truth["tokens"]:
            raise CheckFailed(f"step {i}: your record differs from the scheduler's",
                              expected=f"total {truth['total']}, per request {truth['tokens']}",
                              got=f"total {rec['total']}, per request {mine}",
                              hint="num_scheduled_tokens is what runs this step, not the prompt length")
    return "every step: per-request tokens add up to the total, as the scheduler says"


@criterion("block ids agree with the KV manager")
def blocks(ctx):
    for i, truth, rec in _records(ctx):
        mine = {str(k): list(v) for k, v in rec["blocks"].items()}
        for rid, ids in truth["blocks"].items():
            if mine.get(rid) != ids:
                raise CheckFailed(f"step {i}, request {rid}: your block ids differ from the KV cache manager's",
                                  expected=str(ids), got=str(mine.get(rid)),
                                  hint="a request's blocks come whole once (scheduled_new_reqs), then only "
                                       "the new ones (scheduled_cached_reqs.new_block_ids)")
    return "every step: each request's blocks are the KV cache manager's"


@criterion("compared with z2v engine trace")
def compare(ctx):
    run = ctx.state.get("run")
    if run is None:
        raise CheckFailed("not run: needs 'vLLM run'")
    record, cached = engine_trace(model_cache_dir() / "trace-step-engine")
    same, differ = describe(vllm_schedule(run), engine_schedule(record),
                            [r["prompt_tokens"] for r in run["requests"]],
                            [r["prompt_tokens"] for r in record["rounds"][0]["requests"]])
    same_b, differ_b = describe_blocks(vllm_blocks(run), engine_blocks(record))
    same, differ = same + same_b, differ + differ_b
    ctx.metrics.update(same=same, differ=differ, engine_trace_cached=cached)
    lines = ["same: " + s for s in same] + ["differs: " + d for d in differ]
    if cached:
        lines.append("(zero2vllm's side was read back from an earlier check: the engine, model and "
                     "settings are unchanged)")
    if any(d.startswith(("step", "tokens")) for d in differ):
        lines.append("why: read Scheduler.schedule (vllm/v1/core/sched/scheduler.py) beside "
                     "zero2vllm/engine/scheduler.py for where each fills the token budget")
    return "\n".join(lines)
