"""`z2v lab run block-pool [--code DIR]`: serve real requests with your block pool in zero2vllm's engine.

The engine (engine/llm_engine.py) runs SmolLM2 greedily twice over the same prompts: once with
its own BlockManager, once with your KVCacheManager behind it (engine_adapter.py), with a pool
small enough that requests are preempted and prompts chunked, and then the prompts again so
their prefixes come from the cache. It passes when both give the same tokens.
"""

from __future__ import annotations

import time
from pathlib import Path

SHARED = ("You are a helpful assistant. Answer briefly and precisely, and never make up facts. "
          "If you do not know, say so. ")
PROMPTS = [
    "Hi",
    "The capital of France is",
    SHARED + "Question: what is the largest planet in the solar system? Answer:",
    "def fibonacci(n):\n    ",
    SHARED + "Question: who wrote Hamlet? Answer:",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who " * 3,
]
POOL = dict(num_kv_blocks=9, max_num_batched_tokens=32)  # ~70-token prompts: preemption and chunks


class RunError(Exception):
    """One-line problems: shown as `Error: ...`, exit 2."""


def load_learner(code: Path | None, entry: str, name: str):
    from zero2vllm.labs import get_lab
    from zero2vllm.labs.framework import CheckFailed, entry_file, load_module

    lab_id = "block-pool" if entry == "block_pool.py" else "scheduler"
    path = Path(code) if code else get_lab(lab_id).reference_dir
    try:
        return load_module(entry_file(path, entry), name), ("yours: " + str(path)) if code else "the reference"
    except CheckFailed as exc:
        raise RunError(exc.message) from None
    except Exception as exc:  # the learner's file does not import
        raise RunError(f"{path}: {type(exc).__name__}: {exc}") from None


def generate(engine, rounds: int = 2, max_tokens: int = 12) -> list[list[int]]:
    from zero2vllm.engine import SamplingParams

    outs = []
    for _ in range(rounds):
        outs.append([o["token_ids"] for o in engine.generate(PROMPTS, SamplingParams(max_tokens=max_tokens))])
    return outs


def run(*, code: Path | None, device: str, steps: int | None, out_dir: Path, echo) -> dict:
    from zero2vllm.labs.block_pool.engine_adapter import learner_block_manager

    module, who = load_learner(code, "block_pool.py", "z2v_learner_block_pool")
    return run_in_engine(dict(block_manager_factory=learner_block_manager(module)), who, "pool", device, echo)


def run_in_engine(factories: dict, who: str, piece: str, device: str, echo) -> dict:
    """Generate with our engine, then with the learner's piece in it; pass if the tokens agree."""
    from zero2vllm.engine import EngineConfig, LLMEngine
    from zero2vllm.models import ensure_model_dir

    started = time.perf_counter()
    folder = ensure_model_dir("smollm2")
    cfg = lambda: EngineConfig(model=str(folder), device=device, num_threads=2, **POOL)  # noqa: E731
    echo(f"zero2vllm's engine, SmolLM2, {POOL['num_kv_blocks']} blocks of 16, "
         f"{POOL['max_num_batched_tokens']}-token steps: first as it is, then with {who}")
    ours = LLMEngine(cfg())
    want = generate(ours)
    try:
        engine = LLMEngine(cfg(), tokenizer=ours.tokenizer, **factories)
        got = generate(engine)
    except Exception as exc:
        raise RunError(f"your {piece} raised {type(exc).__name__}: {exc}") from None
    same = got == want
    bm = engine.block_manager
    metrics = {"same_tokens": same, "steps": engine.stats.steps, "preemptions": engine.scheduler.num_preemptions,
               "preemptions_ours": ours.scheduler.num_preemptions, "steps_ours": ours.stats.steps,
               "free_blocks_after": bm.num_free_blocks, "num_blocks": bm.num_blocks}
    for i, (g, w) in enumerate(zip(got[0], want[0])):
        echo(f"  prompt {i}: {'same' if g == w else 'DIFFERENT'} ({len(g)} tokens)"
             + ("" if g == w else f"  ours {w} yours {g}"))
    echo(f"{engine.stats.steps} steps ({ours.stats.steps} with ours), {metrics['preemptions']} preemptions "
         f"({metrics['preemptions_ours']} with ours); {bm.num_free_blocks}/{bm.num_blocks} blocks free at the end")
    echo(f"PASS: your {piece} gives the engine's tokens" if same else f"FAIL: different tokens with your {piece}")
    return {"passed": same and bm.num_free_blocks == bm.num_blocks, "metrics": metrics, "artifacts": [],
            "duration_s": time.perf_counter() - started}
