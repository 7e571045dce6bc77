"""Your scheduler: one step of continuous batching, as vLLM V1's Scheduler.schedule() does it
(vLLM 0.32, v1/core/sched/scheduler.py; first come first served).

Fill in the TODOs; keep the names (the checks call them, and they are vLLM's). README.md says
what one step does. Check it with `z2v check scheduler`.

The KV cache manager is given to you (the block-pool lab's KVCacheManager):
    kv.get_computed_blocks(request) -> (blocks, num_computed_tokens)   the prefix-cache hit
    kv.allocate_slots(request, num_new_tokens, num_new_computed_tokens=0, new_computed_blocks=(),
                      full_sequence_must_fit=False) -> new blocks, or None if they do not fit
    kv.free(request)
A request has request_id, all_token_ids, num_tokens, num_prompt_tokens, num_computed_tokens,
output_token_ids, max_tokens, status ("WAITING", "RUNNING", "PREEMPTED", "FINISHED"),
num_preemptions and append_output_token_ids(token).
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
        # TODO 1: running requests first, oldest first. Each gets
        #   min(num_tokens - num_computed_tokens, token budget left, max_model_len - num_computed_tokens - 1)
        #   tokens; if allocate_slots says no, preempt the newest running request and try again
        #   (it may be this one: then stop scheduling running requests).
        # TODO 2: only if nothing was preempted: waiting requests from the front, while there is
        #   budget and fewer than max_num_seqs are running: the prefix hit, then a chunk of the rest;
        #   admit only if the whole request fits (full_sequence_must_fit=True), else stop.
        # TODO 3: the scheduled tokens count as computed now (num_computed_tokens += n).
        raise NotImplementedError("TODO: Scheduler.schedule")

    def _preempt_request(self, request) -> None:
        # TODO: recompute preemption: free its blocks, status "PREEMPTED", num_computed_tokens = 0,
        # num_preemptions += 1, and back to the FRONT of the waiting queue
        raise NotImplementedError("TODO: Scheduler._preempt_request")

    def update_from_output(self, scheduler_output: SchedulerOutput, sampled_token_ids: dict[str, list[int]]) -> list:
        """Given: append each request's sampled tokens; finish (and free) those that reached max_tokens."""
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
