"""vLLM's schedule (from the trace-step driver) against zero2vllm's engine on the same prompts:
per step, the tokens each request got. Requests are matched by order of arrival."""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

# The second prompt is longer than a block (32 tokens), so its blocks grow while it is chunked.
PROMPTS = ["The capital of France is",
           "Once upon a time, in a small village by the sea, there lived an old fisherman who walked "
           "down to the harbour every morning, mended his nets and told the children about storms"]
SETTINGS = {"max_tokens": 8, "block_size": 32, "max_num_batched_tokens": 16, "max_num_seqs": 4,
            "num_kv_blocks": 64, "prefix_caching": True}


def vllm_schedule(run: dict) -> list[dict[int, int]]:
    order: dict[str, int] = {}
    steps = []
    for step in run["steps"]:
        for rid in step["truth"]["tokens"]:
            order.setdefault(rid, len(order))
        steps.append({order[r]: n for r, n in step["truth"]["tokens"].items()})
    return steps


def vllm_blocks(run: dict) -> dict[int, list[int]]:
    """Each request's block ids the last time it was scheduled."""
    order: dict[str, int] = {}
    last: dict[int, list[int]] = {}
    for step in run["steps"]:
        for rid, ids in step["truth"]["blocks"].items():
            last[order.setdefault(rid, len(order))] = ids
    return last


def engine_blocks(record: dict) -> dict[int, list[int]]:
    last: dict[int, list[int]] = {}
    for step in record["rounds"][0]["steps"]:
        for w in step["work"]:
            last[w["seq"]] = list(w["block_table"])
    return last


def describe_blocks(vllm: dict[int, list[int]], engine: dict[int, list[int]]) -> tuple[list[str], list[str]]:
    if vllm == engine:
        return [f"block ids per request {vllm}"], []
    why = ""
    if vllm and min(min(v) for v in vllm.values() if v) >= 1 and any(0 in v for v in engine.values()):
        why = " (vLLM's BlockPool keeps block 0 as its null block, so its ids start at 1)"
    return [], [f"block ids per request: vLLM {vllm}, engine {engine}{why}"]


def engine_schedule(record: dict) -> list[dict[int, int]]:
    rounds = record["rounds"][0]
    return [{w["seq"]: w["tokens"] for w in step["work"]} for step in rounds["steps"]]


def describe(vllm: list[dict[int, int]], engine: list[dict[int, int]], vllm_prompts: list[int],
             engine_prompts: list[int]) -> tuple[list[str], list[str]]:
    """(what is the same, what differs), as sentences."""
    same, differ = [], []
    if vllm_prompts == engine_prompts:
        same.append(f"prompt lengths {vllm_prompts} tokens (the same tokenizer)")
    else:
        differ.append(f"prompt lengths: vLLM {vllm_prompts}, engine {engine_prompts}")
    first = next((i for i, (a, b) in enumerate(zip(vllm, engine)) if a != b), None)
    if first is None and len(vllm) == len(engine):
        same.append(f"all {len(vllm)} steps schedule the same tokens per request")
    else:
        k = first if first is not None else min(len(vllm), len(engine))
        if k:
            same.append(f"the first {k} step(s) schedule the same tokens per request")
        a = vllm[k] if k < len(vllm) else "nothing"
        b = engine[k] if k < len(engine) else "nothing"
        differ.append(f"step {k + 1}: vLLM {a}, engine {b}")
    differ.append(f"steps: vLLM {len(vllm)}, engine {len(engine)}") if len(vllm) != len(engine) else \
        same.append(f"{len(vllm)} steps in both")
    per_v = [sum(s.get(i, 0) for s in vllm) for i in range(len(vllm_prompts))]
    per_e = [sum(s.get(i, 0) for s in engine) for i in range(len(engine_prompts))]
    (same if per_v == per_e else differ).append(f"tokens computed per request: vLLM {per_v}, engine {per_e}")
    return same, differ


def engine_trace(cache: Path) -> tuple[dict, bool]:
    """zero2vllm's engine on PROMPTS with SETTINGS: (its trace record, whether it was read back).
    The engine is greedy and deterministic, so the record is kept in CACHE under a key of what it
    depends on (the engine's sources, the model's files, torch's and transformers' versions)."""
    from zero2vllm.models import ensure_model_dir

    folder = ensure_model_dir("smollm2")
    key = hashlib.sha256(json.dumps([PROMPTS, SETTINGS], sort_keys=True).encode())
    engine = Path(__file__).resolve().parents[2] / "engine"
    # every file, the C++ kernels too (labs.check.files_hash looks at Python and text files only)
    for f in sorted(p for p in engine.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        key.update(str(f.relative_to(engine)).encode() + b"\0" + f.read_bytes())
    for f in sorted(folder.iterdir()):  # weights by size and time: hashing 0.5 GB costs seconds
        st = f.stat()
        key.update(f"{f.name} {st.st_size} {st.st_mtime_ns}".encode())
    for dist in ("torch", "transformers"):
        key.update(metadata.version(dist).encode())
    path = cache / f"{key.hexdigest()[:32]}.json"
    try:
        kept = json.loads(path.read_text())
        if isinstance(kept, dict) and isinstance(kept.get("rounds"), list):  # else: traced again
            return kept, True
    except (OSError, ValueError):
        pass
    from zero2vllm.engine.trace import run_trace

    record, _ = run_trace({"prompts": PROMPTS, "model": "smollm2", **SETTINGS}, save=False)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial")  # then renamed: checks run side by side
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the next check the trace
    return record, False
