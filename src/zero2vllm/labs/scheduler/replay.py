"""Step a learner's Scheduler through a trace exactly as `_vllm_oracle/vllm_side.py` steps vLLM's:
requests arrive at their steps, each step is schedule() then update_from_output() with a fake
model output (a request samples one token when its scheduled tokens reach its end)."""

from __future__ import annotations


class Request:
    """The request fields a scheduler reads and writes (vLLM: v1/request.py's Request)."""

    def __init__(self, request_id: str, prompt_token_ids: list[int], max_tokens: int):
        self.request_id = request_id
        self.prompt_token_ids = list(prompt_token_ids)
        self.all_token_ids = list(prompt_token_ids)
        self.output_token_ids: list[int] = []
        self.num_prompt_tokens = len(prompt_token_ids)
        self.num_computed_tokens = 0
        self.max_tokens = max_tokens
        self.status = "WAITING"
        self.num_preemptions = 0

    @property
    def num_tokens(self) -> int:
        return len(self.all_token_ids)

    def append_output_token_ids(self, token_id: int) -> None:
        self.output_token_ids.append(token_id)
        self.all_token_ids.append(token_id)

    def __repr__(self) -> str:
        return (f"Request({self.request_id}, {self.num_computed_tokens}/{self.num_tokens} computed, "
                f"{self.status})")


def kv_manager(trace: dict):
    from zero2vllm.labs.block_pool.reference.block_pool import KVCacheManager

    return KVCacheManager(trace["num_blocks"], trace["block_size"])


def make_scheduler(module, trace: dict, kv=None):
    kv = kv or kv_manager(trace)
    return module.Scheduler(kv, max_num_seqs=trace["max_num_seqs"],
                            max_num_batched_tokens=trace["max_num_batched_tokens"],
                            max_model_len=trace["max_model_len"]), kv


def replay(module, trace: dict, watch=None) -> list[dict]:
    """`watch` (optional) has start(sched, kv), before(step, requests) and after(step, requests, output, result)."""
    sched, kv = make_scheduler(module, trace)
    if watch:
        watch.start(sched, kv)
    arrivals: dict[int, list] = {}
    for r in trace["requests"]:
        arrivals.setdefault(r["arrival_step"], []).append(r)
    last_arrival = max(arrivals)
    requests, out = {}, []
    for step in range(trace["max_steps"]):
        for r in arrivals.get(step, []):
            requests[r["id"]] = Request(r["id"], r["prompt"], r["max_tokens"])
            sched.add_request(requests[r["id"]])
        unfinished = [r for r in requests.values() if r.status != "FINISHED"]
        if not unfinished and step > last_arrival:
            break
        if watch:
            watch.before(step, requests)
        so = sched.schedule()
        sampled = {rid: [trace["token"]] for rid in so.num_scheduled_tokens
                   if requests[rid].num_computed_tokens >= requests[rid].num_tokens}
        finished = sched.update_from_output(so, sampled)
        res = {"scheduled": dict(so.num_scheduled_tokens), "preempted": sorted(so.preempted_req_ids),
               "finished": sorted(str(r.request_id) for r in finished),
               "free": kv.block_pool.get_num_free_blocks()}
        out.append(res)
        if watch:
            watch.after(step, requests, so, res)
    return out


def first_difference(trace: dict, got: list[dict], want: list[dict]) -> str | None:
    head = (f"trace seed {trace.get('seed')} (block_size {trace['block_size']}, {trace['num_blocks']} blocks, "
            f"max_num_seqs {trace['max_num_seqs']}, max_num_batched_tokens {trace['max_num_batched_tokens']}, "
            f"{len(trace['requests'])} requests)")
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            diffs = [f"{k}: vLLM {w.get(k)}, yours {g.get(k)}" for k in ("scheduled", "preempted", "finished", "free")
                     if g.get(k) != w.get(k)]
            return f"{head}, step {i}: " + "; ".join(diffs)
    if len(got) != len(want):
        return f"{head}: yours ran {len(got)} steps, vLLM {len(want)}"
    return None
