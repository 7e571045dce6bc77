"""The scheduler lab's criteria, run on the learner's scheduler.py by zero2vllm.labs.runner.

The learner's Scheduler(kv_cache_manager, max_num_seqs, max_num_batched_tokens, max_model_len)
gets the block-pool lab's reference KVCacheManager and is stepped through seeded traces
(replay.py). The first four criteria watch each step for one property each, on traces of our
own; the last compares every step with vLLM 0.32's real Scheduler.
"""

from __future__ import annotations

import random
from pathlib import Path

from zero2vllm.labs.framework import CheckFailed, criterion
from zero2vllm.labs.scheduler.replay import first_difference, replay

RECORDED = Path(__file__).parent / "recorded_vllm.json.gz"


def seeds(ctx, n_fast=60, n=250):
    base = random.Random().randrange(10**6, 10**9)
    return range(base, base + (n_fast if ctx.fast else n))


def need(mod):
    if not hasattr(mod, "Scheduler"):
        raise CheckFailed("scheduler.py has no Scheduler", hint="keep the scaffold's names: Scheduler, SchedulerOutput")


class Watch:
    """Sees the scheduler and the KV cache manager before and after each step."""

    def __init__(self, trace):
        self.trace = trace
        self.calls = []

    def start(self, sched, kv):
        self.sched, self.kv = sched, kv
        real = kv.allocate_slots

        def allocate_slots(request, num_new_tokens, num_new_computed_tokens=0, new_computed_blocks=(), **kw):
            free = kv.block_pool.get_num_free_blocks()
            hits = list(new_computed_blocks or ())
            reviving = sum(1 for b in hits if b.ref_cnt == 0)
            got = real(request, num_new_tokens, num_new_computed_tokens, new_computed_blocks, **kw)
            self.calls.append((request.request_id, free, hits, reviving, got is not None, request.num_tokens))
            return got

        kv.allocate_slots = allocate_slots

    def fail(self, step, msg, hint=None):
        t = self.trace
        raise CheckFailed(f"trace seed {t['seed']} (block_size {t['block_size']}, {t['num_blocks']} blocks, "
                          f"max_num_seqs {t['max_num_seqs']}, max_num_batched_tokens "
                          f"{t['max_num_batched_tokens']}), step {step}: {msg}", hint=hint)

    def before(self, step, requests):
        self.calls = []
        self.running = [r.request_id for r in self.sched.running]
        self.waiting = [r.request_id for r in self.sched.waiting]
        self.left = {rid: r.num_tokens - r.num_computed_tokens for rid, r in requests.items()}

    def after(self, step, requests, out, res):
        pass


def run_watch(ctx, watch_cls):
    from zero2vllm.labs._vllm_oracle.traces import scheduler_trace

    need(ctx.module)
    steps = 0
    for seed in seeds(ctx):
        trace = scheduler_trace(seed)
        steps += len(replay(ctx.module, trace, watch_cls(trace)))
    return steps


# -- 1. budgets -----------------------------------------------------------------------------------
class Budgets(Watch):
    def after(self, step, requests, out, res):
        t, sched = self.trace, res["scheduled"]
        total = sum(sched.values())
        if total > t["max_num_batched_tokens"]:
            self.fail(step, f"{total} tokens scheduled, over max_num_batched_tokens", "stop when the token budget is spent")
        if len(self.sched.running) > t["max_num_seqs"]:
            self.fail(step, f"{len(self.sched.running)} running requests, over max_num_seqs",
                      "admit a waiting request only while len(running) < max_num_seqs")
        for rid, n in sched.items():
            if n < 1 or n > self.left.get(rid, 0) and rid not in self.waiting:
                self.fail(step, f"request {rid} got {n} tokens with {self.left.get(rid)} uncomputed",
                          "num_new_tokens = num_tokens - num_computed_tokens, capped by the budget")
            if requests[rid].num_computed_tokens > requests[rid].num_tokens:
                self.fail(step, f"request {rid} has more computed tokens than tokens")


@criterion("token budget and max_num_seqs")
def budgets(ctx):
    n = run_watch(ctx, Budgets)
    return f"{n} steps: never over max_num_batched_tokens or max_num_seqs, chunks = what is left"


# -- 2. running first ----------------------------------------------------------------------------
class RunningFirst(Watch):
    def after(self, step, requests, out, res):
        sched = res["scheduled"]
        if sum(sched.values()) < self.trace["max_num_batched_tokens"] and not res["preempted"]:
            for rid in self.running:
                if rid not in sched and self.left.get(rid, 0) > 0:
                    self.fail(step, f"running request {rid} ({self.left[rid]} uncomputed tokens) was left out "
                                    f"with budget to spare", "schedule every running request that has tokens left")
        admitted = [rid for rid in sched if rid not in self.running]
        if not admitted:
            return
        for rid in self.running:
            if rid in res["preempted"]:
                continue
            if sched.get(rid, 0) != self.left[rid] and self.left[rid] > 0:
                self.fail(step, f"decode starved by a prefill: waiting request {admitted[0]} got "
                                f"{sched[admitted[0]]} tokens while running request {rid} got {sched.get(rid, 0)} "
                                f"of its {self.left[rid]}",
                          "schedule the running requests first (oldest first), then admit waiting ones "
                          "with the budget left")


@criterion("running requests first")
def running_first(ctx):
    n = run_watch(ctx, RunningFirst)
    return f"{n} steps: a new request only gets the budget the running ones leave"


# -- 3. preemption ---------------------------------------------------------------------------------
class Preemption(Watch):
    def after(self, step, requests, out, res):
        pre = res["preempted"]
        if not pre:
            return
        k = len(pre)
        tail = self.running[-k:]
        if sorted(tail) != pre:
            self.fail(step, f"preempted {pre}, but the newest running requests were {tail} "
                            f"(running, oldest first: {self.running})",
                      "preempt the tail: self.running.pop(), the request admitted last")
        for rid in pre:
            r = requests[rid]
            if r.num_computed_tokens != 0:
                self.fail(step, f"preempted request {rid} still counts {r.num_computed_tokens} computed tokens",
                          "recompute preemption drops all its K/V: set num_computed_tokens = 0")
            if self.kv.req_to_blocks.get(rid):
                self.fail(step, f"preempted request {rid} still holds blocks "
                                f"{[b.block_id for b in self.kv.req_to_blocks[rid]]}",
                          "free its blocks: kv_cache_manager.free(request)")
        front = [r.request_id for r in list(self.sched.waiting)[:k]]
        if front != tail:
            self.fail(step, f"preempted requests {tail} are not at the front of the waiting queue "
                            f"(front: {front})", "waiting.appendleft(request): they go first once memory frees")


@criterion("preemption by recompute")
def preemption(ctx):
    n = run_watch(ctx, Preemption)
    return f"{n} steps: the newest running request goes first, to the queue's front, KV dropped"


# -- 4. admission ---------------------------------------------------------------------------------
class Admission(Watch):
    def after(self, step, requests, out, res):
        sched = res["scheduled"]
        admitted = [rid for rid in self.waiting if rid in sched]
        if admitted != self.waiting[:len(admitted)]:
            self.fail(step, f"admitted {admitted} out of order (waiting, first come first served: {self.waiting})",
                      "take waiting requests from the front; when one does not fit, stop")
        bs = self.trace["block_size"]
        for rid in admitted:
            call = next((c for c in self.calls if c[0] == rid and c[4]), None)
            if call is None:
                continue
            _, free, hits, reviving, _, num_tokens = call
            whole = max(-(-num_tokens // bs) - len(hits), 0) + reviving
            if whole > free:
                self.fail(step, f"admitted request {rid} ({num_tokens} tokens, "
                                f"{len(hits)} blocks from the prefix cache) with {free} free blocks; "
                                f"its whole prompt needs {whole}",
                          "admit only if the whole request fits now, not just its first chunk: "
                          "allocate_slots(..., full_sequence_must_fit=True)")


@criterion("admission only when blocks fit")
def admission(ctx):
    n = run_watch(ctx, Admission)
    return f"{n} steps: first come first served, and only when the whole request fits"


# -- 5. the differential ------------------------------------------------------------------------
@criterion("same steps as vLLM's Scheduler")
def differential(ctx):
    from zero2vllm.labs import _vllm_oracle as oracle
    from zero2vllm.labs._vllm_oracle.traces import scheduler_trace

    need(ctx.module)
    return oracle.differential(ctx, "scheduler", scheduler_trace, RECORDED, compare, live=200, fast=50,
                               timeout=600)

def compare(mod, trace, want, source):
    diff = first_difference(trace, replay(mod, trace), want)
    if diff:
        raise CheckFailed(f"differs from vLLM's Scheduler ({source}) at {diff}",
                          hint="scheduled = tokens per request this step; preempted and finished request ids; "
                               "free = free blocks after the step")
