"""Record what the engine decides, step by step: for `z2v engine trace` and the dashboard.

`trace(engine, prompts, params)` runs the prompts to the end and returns one dict per step:
what the scheduler planned (which sequence computes how many tokens, which were preempted),
each sequence's block table afterwards, the tokens sampled, and a map of the block pool
(`pool`: one character per block; see POOL_LEGEND).

`run_trace(settings)` is what `z2v engine trace` and the dashboard's "Run a trace" form both
call: build an engine from the settings, trace the prompts (`repeat` rounds on the same engine,
so round 2 can hit the prefix cache), and save the record for the dashboard (zero2vllm.engine.traces).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from .llm_engine import LLMEngine
from .sequence import SamplingParams

POOL_LEGEND = "0-9a-z: the sequence holding the block, '*': shared by several, '~': free but still " \
              "prefix-cached, '.': free"
_NAMES = "0123456789abcdefghijklmnopqrstuvwxyz"


def pool_map(engine: LLMEngine, seqs) -> str:
    owners: dict[int, set[int]] = {}
    for seq in seqs:
        for block_id in ([] if seq.is_finished else seq.block_table):  # a finished table is stale
            owners.setdefault(block_id, set()).add(seq.seq_id)
    index = {seq.seq_id: i for i, seq in enumerate(seqs)}
    chars = []
    for block in engine.block_manager.blocks:
        held = owners.get(block.block_id)
        if held:
            chars.append("*" if len(held) > 1 else _NAMES[index[next(iter(held))] % len(_NAMES)])
        else:
            chars.append("~" if block.hash is not None else ".")
    return "".join(chars)


def trace(engine: LLMEngine, prompts: list, params: SamplingParams, max_steps: int = 10_000) -> dict:
    """Run `prompts` through `engine`, recording every step. Returns {"requests": [...], "steps": [...]}."""
    seqs = [engine.add_request(p, params) for p in prompts]
    number = {seq.seq_id: i for i, seq in enumerate(seqs)}
    decode = (lambda ids: engine.tokenizer.decode(ids)) if engine.tokenizer else (lambda ids: str(ids))
    steps = []
    while engine.has_work() and len(steps) < max_steps:
        free_before = engine.block_manager.num_free_blocks
        hits_before = engine.block_manager.prefix_hits
        updated = engine.step()
        batch = engine.last_batch
        sampled = {s.seq_id: s.last_token for s in updated}
        work = []
        for seq, n in batch.items:
            start = seq.num_computed_tokens - n
            kind = "decode" if n == 1 and start >= seq.num_prompt_tokens else (
                "recompute" if seq.num_preemptions else "prefill")
            if seq.seq_id not in sampled:
                kind += " chunk"  # the token budget ran out before the prompt's end
            work.append({"seq": number[seq.seq_id], "kind": kind, "tokens": n, "positions": [start, start + n],
                         "cached_tokens": seq.num_cached_tokens if start == seq.num_cached_tokens else 0,
                         "block_table": list(seq.block_table),
                         "sampled": decode([sampled[seq.seq_id]]) if seq.seq_id in sampled else None,
                         "finished": seq.finish_reason})
        steps.append({"step": len(steps) + 1, "tokens": batch.num_tokens, "work": work,
                      "preempted": [number[s.seq_id] for s in batch.preempted],
                      "waiting": [number[s.seq_id] for s in engine.scheduler.waiting],
                      "blocks_free": engine.block_manager.num_free_blocks, "blocks_free_before": free_before,
                      "prefix_hit_tokens": engine.block_manager.prefix_hits - hits_before,
                      "pool": pool_map(engine, seqs)})
    requests = [{"seq": i, "prompt_tokens": s.num_prompt_tokens, "completion": decode(s.completion_token_ids),
                 "finish_reason": s.finish_reason, "preemptions": s.num_preemptions} for i, s in enumerate(seqs)]
    return {"block_size": engine.config.block_size, "num_blocks": engine.block_manager.num_blocks,
            "budget_tokens": engine.config.max_num_batched_tokens, "requests": requests, "steps": steps}


def run_trace(settings: dict, *, source: str = "cli", save: bool = True,
              root: Path | str | None = None) -> tuple[dict, Path | None]:
    """Run a trace described by SETTINGS (prompts, model and the keys of traces.DEFAULTS) and,
    unless save=False, save it under ROOT/engine-traces (ROOT: the data directory).

    Returns (record, saved path or None); the record's "rounds" holds one `trace()` dict per
    round. Raises ModelError, ValueError (a prompt that can't fit), FileNotFoundError or
    RuntimeError with a one-line reason; nothing is saved then.
    """
    import torch

    from zero2vllm.engine import traces
    from zero2vllm.models import ensure_model_dir

    from .config import EngineConfig

    s = {**traces.DEFAULTS, **settings}
    prompts = list(s["prompts"])
    if not prompts:
        raise ValueError("give at least one prompt")
    started = time.perf_counter()
    folder = ensure_model_dir(s.get("model") or "smollm2")
    torch.set_num_threads(min(2, torch.get_num_threads()))  # a trace is tiny; leave cores to the rest
    engine = LLMEngine(EngineConfig(model=str(folder), block_size=s["block_size"], num_kv_blocks=s["num_kv_blocks"],
                                    max_num_batched_tokens=s["max_num_batched_tokens"],
                                    max_num_seqs=s["max_num_seqs"], enable_prefix_caching=s["prefix_caching"]))
    params = SamplingParams(max_tokens=s["max_tokens"])
    rounds = [trace(engine, prompts, params) for _ in range(s["repeat"])]
    first = rounds[0]
    record = {"version": traces.VERSION, "created": datetime.now().astimezone().isoformat(timespec="seconds"),
              "source": source, "seconds": round(time.perf_counter() - started, 3),
              "settings": {"model": s.get("model") or "smollm2", "model_path": str(folder), "prompts": prompts,
                           **{k: s[k] for k in traces.DEFAULTS}},
              "block_size": first["block_size"], "num_blocks": first["num_blocks"],
              "budget_tokens": first["budget_tokens"], "rounds": rounds}
    path = traces.save(record, root) if save else None
    if path is not None:
        record["name"] = path.stem
    return record, path
