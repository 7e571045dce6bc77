"""Replays traces on real vLLM 0.32's own classes; run with the vLLM venv's python, never imported.

    $VLLM_VENV/bin/python vllm_side.py < request.json > answer.json

The request is {"kind": "block-pool" | "scheduler", "traces": [...]}; the answer holds one list of
per-step results per trace. It imports nothing from zero2vllm (that lives in another venv): the
two sides share only the JSON format, written down in traces.py, which makes the traces.

- block-pool: vLLM's KVCacheManager (v1/core/kv_cache_manager.py) over its BlockPool, driven as
  the scheduler drives it: get_computed_blocks + allocate_slots for a new request,
  allocate_slots for one more token, free. vLLM keeps block 0 as its null block, so its pool gets
  one block more and its block ids are shifted down by one to match ours.
- scheduler: vLLM's Scheduler (v1/core/sched/scheduler.py), built on the CPU the way vLLM's own
  tests build it (tests/v1/core/utils.py: create_scheduler), stepped with fake model outputs.
"""

import json
import sys


def _spec(torch, block_size):
    from vllm.v1.kv_cache_interface import FullAttentionSpec

    return FullAttentionSpec(block_size=block_size, num_kv_heads=1, head_size=1, dtype=torch.float32)


def _hasher(block_size):
    from vllm.utils.hashing import get_hash_fn_by_name
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash

    fn = get_hash_fn_by_name("sha256")
    init_none_hash(fn)
    return get_request_block_hasher(block_size, fn)


def _request(rid, tokens, hasher, max_tokens=1_000_000):
    from vllm.sampling_params import SamplingParams
    from vllm.v1.request import Request

    return Request(request_id=str(rid), prompt_token_ids=list(tokens),
                   sampling_params=SamplingParams(max_tokens=max_tokens, ignore_eos=True),
                   pooling_params=None, block_hasher=hasher)


# -- block pool -------------------------------------------------------------------------------
def replay_block_pool(trace, torch):
    from vllm.v1.core.kv_cache_manager import KVCacheManager
    from vllm.v1.kv_cache_interface import KVCacheConfig, KVCacheGroupSpec

    bs, n = trace["block_size"], trace["num_blocks"]
    kvc = KVCacheConfig(num_blocks=n + 1, kv_cache_tensors=[],
                        kv_cache_groups=[KVCacheGroupSpec(["layer"], _spec(torch, bs))])
    mgr = KVCacheManager(kvc, max_model_len=100_000, scheduler_block_size=bs, hash_block_size=bs,
                         enable_caching=True)
    pool = mgr.block_pool
    evicted = [0]
    real_evict = pool._maybe_evict_cached_block

    def counting_evict(block):
        hit = real_evict(block)
        evicted[0] += bool(hit)
        return hit

    pool._maybe_evict_cached_block = counting_evict
    hasher = _hasher(bs)
    live, out = {}, []
    for op in trace["ops"]:
        kind, rid = op[0], op[1]
        evicted[0] = 0
        res = {}
        if kind == "add":
            req = _request(rid, op[2], hasher)
            blocks, hit = mgr.get_computed_blocks(req)[:2]
            res["hit"] = hit
            got = mgr.allocate_slots(req, req.num_tokens - hit, num_new_computed_tokens=hit,
                                     new_computed_blocks=blocks)
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
            if got is None:  # out of blocks: the request gives up its blocks (preempted)
                mgr.free(live.pop(rid))
            else:
                req.num_computed_tokens = req.num_tokens
        elif kind == "free":
            mgr.free(live.pop(rid))
        if rid in live:
            res["blocks"] = [b - 1 for b in mgr.get_block_ids(str(rid))[0]]
        res["evicted"] = evicted[0]
        res["free"] = pool.get_num_free_blocks()
        out.append(res)
    return out


# -- scheduler --------------------------------------------------------------------------------
def replay_scheduler(trace, torch):
    from vllm.config import CacheConfig, ModelConfig, SchedulerConfig, VllmConfig
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.kv_cache_interface import KVCacheConfig, KVCacheGroupSpec
    from vllm.v1.outputs import ModelRunnerOutput
    from vllm.v1.structured_output import StructuredOutputManager

    bs, n = trace["block_size"], trace["num_blocks"]
    sc = SchedulerConfig(max_num_seqs=trace["max_num_seqs"],
                         max_num_batched_tokens=trace["max_num_batched_tokens"],
                         max_model_len=trace["max_model_len"], enable_chunked_prefill=True,
                         is_encoder_decoder=False)
    mc = ModelConfig(model=model_dir(), dtype="float32", seed=0, max_model_len=trace["max_model_len"],
                     skip_tokenizer_init=True)
    cc = CacheConfig(block_size=bs, cache_dtype="auto", enable_prefix_caching=True)
    cc.num_gpu_blocks = n + 1
    vc = VllmConfig(scheduler_config=sc, model_config=mc, cache_config=cc)
    kvc = KVCacheConfig(num_blocks=n + 1, kv_cache_tensors=[],
                        kv_cache_groups=[KVCacheGroupSpec(["layer"], _spec(torch, bs))])
    s = Scheduler(vllm_config=vc, kv_cache_config=kvc, structured_output_manager=StructuredOutputManager(vc),
                  block_size=bs, log_stats=False)
    hasher = _hasher(bs)
    arrivals = {}
    for r in trace["requests"]:
        arrivals.setdefault(r["arrival_step"], []).append(r)
    out = []
    for step in range(trace["max_steps"]):
        for r in arrivals.get(step, []):
            s.add_request(_request(r["id"], r["prompt"], hasher, max_tokens=r["max_tokens"]))
        if not (s.waiting or s.running) and step > max(arrivals):
            break
        so = s.schedule()
        sched = {k: v for k, v in so.num_scheduled_tokens.items()}
        req_ids = list(sched)
        # a request samples a token once all its known tokens are computed (end of prompt, decodes)
        sampled = []
        for rid in req_ids:
            req = s.requests[rid]
            sampled.append([trace["token"]] if req.num_computed_tokens >= req.num_tokens else [])
        mro = ModelRunnerOutput(req_ids=req_ids, req_id_to_index={r: i for i, r in enumerate(req_ids)},
                                sampled_token_ids=sampled)
        eco = s.update_from_output(so, mro)
        finished = sorted(str(o.request_id) for v in eco.values() for o in v.outputs if o.finish_reason)
        out.append({"scheduled": sched, "preempted": sorted(so.preempted_req_ids or ()),
                    "finished": finished, "free": s.kv_cache_manager.block_pool.get_num_free_blocks()})
    return out


_MODEL_DIR = []
# ModelConfig reads a config.json; the scheduler never runs the model, so a tiny Llama's will do
TINY_LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
              "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
              "num_hidden_layers": 2, "vocab_size": 128, "max_position_embeddings": 4096,
              "rms_norm_eps": 1e-5, "torch_dtype": "float32"}


def model_dir():
    if not _MODEL_DIR:
        import tempfile

        folder = tempfile.mkdtemp(prefix="z2v-oracle-model-")
        with open(f"{folder}/config.json", "w") as f:
            json.dump(TINY_LLAMA, f)
        _MODEL_DIR.append(folder)
    return _MODEL_DIR[0]


def main():
    import logging
    import os

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    logging.disable(logging.WARNING)
    import torch

    req = json.load(sys.stdin)
    replay = {"block-pool": replay_block_pool, "scheduler": replay_scheduler}[req["kind"]]
    results = [replay(t, torch) for t in req["traces"]]
    json.dump({"vllm": _version(), "results": results}, sys.stdout)


def _version():
    import vllm

    return getattr(vllm, "__version__", "?")


if __name__ == "__main__":
    main()
