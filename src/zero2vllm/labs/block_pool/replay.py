"""Drive a learner's KVCacheManager through a trace exactly as `_vllm_oracle/vllm_side.py` drives
vLLM's, and report per op what vLLM reports: hit tokens, ok, block ids, evictions, free blocks."""

from __future__ import annotations


class Request:
    """The request fields a KVCacheManager reads (vLLM: v1/request.py's Request)."""

    def __init__(self, request_id: str, prompt_token_ids: list[int]):
        self.request_id = request_id
        self.all_token_ids = list(prompt_token_ids)
        self.num_prompt_tokens = len(prompt_token_ids)
        self.num_computed_tokens = 0

    @property
    def num_tokens(self) -> int:
        return len(self.all_token_ids)

    def append_output_token_ids(self, token_id: int) -> None:
        self.all_token_ids.append(token_id)


def count_evictions(pool) -> list[int]:
    """Wrap the pool's _maybe_evict_cached_block so each call that evicts is counted."""
    counter = [0]
    real = pool._maybe_evict_cached_block

    def counting(block):
        hit = real(block)
        counter[0] += bool(hit)
        return hit

    pool._maybe_evict_cached_block = counting
    return counter


def block_ids(mgr, rid: str) -> list[int]:
    return [b.block_id for b in mgr.req_to_blocks.get(rid, [])]


def replay(module, trace: dict) -> list[dict]:
    mgr = module.KVCacheManager(trace["num_blocks"], trace["block_size"])
    pool = mgr.block_pool
    evicted = count_evictions(pool)
    live, out = {}, []
    for op in trace["ops"]:
        kind, rid = op[0], str(op[1])
        evicted[0] = 0
        res = {}
        if kind == "add":
            req = Request(rid, op[2])
            blocks, hit = mgr.get_computed_blocks(req)
            res["hit"] = hit
            got = mgr.allocate_slots(req, req.num_tokens - hit, hit, blocks)
            res["ok"] = got is not None
            if got is not None:
                req.num_computed_tokens = req.num_tokens
                live[rid] = req
            else:
                mgr.free(req)
        elif rid not in live:
            res["skip"] = True
        elif kind == "append":
            req = live[rid]
            req.append_output_token_ids(op[2])
            got = mgr.allocate_slots(req, 1)
            res["ok"] = got is not None
            if got is None:
                mgr.free(live.pop(rid))
            else:
                req.num_computed_tokens = req.num_tokens
        elif kind == "free":
            mgr.free(live.pop(rid))
        if rid in live:
            res["blocks"] = block_ids(mgr, rid)
        res["evicted"] = evicted[0]
        res["free"] = pool.get_num_free_blocks()
        out.append(res)
    return out


def first_difference(trace: dict, got: list[dict], want: list[dict]) -> str | None:
    """The first op where the learner's pool and vLLM's disagree, in words; None if none."""
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            op = trace["ops"][i]
            shown = op[:2] + ([f"{len(op[2])} tokens"] if op[0] == "add" else op[2:])
            diffs = [f"{k}: vLLM {w.get(k)!r}, yours {g.get(k)!r}" for k in ("hit", "ok", "blocks", "evicted", "free")
                     if g.get(k) != w.get(k)]
            return f"trace seed {trace.get('seed')} (block_size {trace['block_size']}, {trace['num_blocks']} blocks), op {i} {shown}: " + "; ".join(diffs)
    if len(got) != len(want):
        return f"trace seed {trace.get('seed')}: {len(got)} results, vLLM has {len(want)}"
    return None
