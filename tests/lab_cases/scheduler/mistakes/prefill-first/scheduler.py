"""Mistake: admits waiting requests (prefills) before the running ones (decodes).

One step of continuous batching, as vLLM V1's Scheduler.schedule() does it (vLLM 0.32,
v1/core/sched/scheduler.py; first come first served, no speculative decoding, no LoRA).

There is no "prefill phase" and "decode phase": every request just has `num_computed_tokens`
(tokens whose K/V are in its blocks) and `num_tokens` (prompt plus outputs), and each step
schedules some of the difference under a token budget. A prompt that does not fit the budget is
computed in chunks over several steps (chunked prefill); a decoding request needs one token.

The KV cache manager is injected (the block-pool lab's KVCacheManager: get_computed_blocks,
allocate_slots, free).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class SchedulerOutput:
    num_scheduled_tokens: dict[str, int] = field(default_factory=dict)   # request id -> tokens this step
    preempted_req_ids: set[str] = field(default_factory=set)

    @property
    def total_num_scheduled_tokens(self) -> int:
        return sum(self.num_scheduled_tokens.values())


class Scheduler:
    def __init__(self, kv_cache_manager, max_num_seqs: int, max_num_batched_tokens: int, max_model_len: int):
        self.kv_cache_manager = kv_cache_manager
        self.max_num_running_reqs = max_num_seqs
        self.max_num_scheduled_tokens = max_num_batched_tokens
        self.max_model_len = max_model_len
        self.requests: dict[str, object] = {}
        self.waiting: deque = deque()   # first come first served; preempted requests go to the front
        self.running: list = []         # in the order they were admitted

    def add_request(self, request) -> None:
        request.status = "WAITING"
        self.requests[request.request_id] = request
        self.waiting.append(request)

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        used = 0
        cap = self.max_num_scheduled_tokens
        kv = self.kv_cache_manager

        n_before = len(self.running)  # the loop below must not reschedule the ones it admits
        # 2. Then waiting requests, in order, unless memory was so short that we preempted.
        if True:
            while used < cap and self.waiting:
                if len(self.running) >= self.max_num_running_reqs:
                    break
                request = self.waiting[0]
                computed_blocks, num_computed = kv.get_computed_blocks(request)
                num_new_tokens = min(request.num_tokens - num_computed, cap - used)
                # admit only if the whole request fits now, not just this chunk
                new_blocks = kv.allocate_slots(request, num_new_tokens, num_computed, computed_blocks,
                                               full_sequence_must_fit=True)
                if new_blocks is None:
                    break  # first come first served: nobody behind it jumps the queue
                self.waiting.popleft()
                self.running.append(request)
                request.status = "RUNNING"
                request.num_computed_tokens = num_computed
                out.num_scheduled_tokens[request.request_id] = num_new_tokens
                used += num_new_tokens

        # 1. Running requests first, oldest first: a prompt's next chunk or one decode token.
        req_index = 0
        while req_index < min(n_before, len(self.running)) and used < cap:
            request = self.running[req_index]
            num_new_tokens = min(request.num_tokens - request.num_computed_tokens, cap - used,
                                 self.max_model_len - request.num_computed_tokens - 1)
            if num_new_tokens <= 0:
                req_index += 1
                continue
            while True:  # out of blocks: preempt the newest running request (maybe this one)
                new_blocks = kv.allocate_slots(request, num_new_tokens)
                if new_blocks is not None:
                    break
                victim = self.running.pop()
                self._preempt_request(victim)
                out.preempted_req_ids.add(victim.request_id)
                if victim is request:
                    break
            if new_blocks is None:
                break
            out.num_scheduled_tokens[request.request_id] = num_new_tokens
            used += num_new_tokens
            req_index += 1

        # 3. The scheduled tokens count as computed now, so the next step can plan past them.
        for req_id, n in out.num_scheduled_tokens.items():
            self.requests[req_id].num_computed_tokens += n
        return out

    def _preempt_request(self, request) -> None:
        """Recompute preemption: drop all its K/V, back to the front of the queue."""
        self.kv_cache_manager.free(request)
        request.status = "PREEMPTED"
        request.num_computed_tokens = 0
        request.num_preemptions += 1
        self.waiting.appendleft(request)

    def update_from_output(self, scheduler_output: SchedulerOutput, sampled_token_ids: dict[str, list[int]]) -> list:
        """Append each request's sampled tokens; finish (and free) those that reached max_tokens."""
        finished = []
        for req_id in scheduler_output.num_scheduled_tokens:
            request = self.requests[req_id]
            tokens = sampled_token_ids.get(req_id, [])
            for token in tokens:
                request.append_output_token_ids(token)
            if tokens and (len(request.output_token_ids) >= request.max_tokens
                           or request.num_tokens >= self.max_model_len):
                request.status = "FINISHED"
                self.running.remove(request)
                self.kv_cache_manager.free(request)
                finished.append(request)
        return finished
