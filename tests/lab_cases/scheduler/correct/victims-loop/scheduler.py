"""Correct variant: a for-loop over a snapshot of the running queue, skipping preempted requests."""
from collections import deque
from types import SimpleNamespace


class Scheduler:
    def __init__(self, kv_cache_manager, max_num_seqs, max_num_batched_tokens, max_model_len):
        self.kv = kv_cache_manager
        self.max_num_seqs = max_num_seqs
        self.max_tokens_per_step = max_num_batched_tokens
        self.max_model_len = max_model_len
        self.running, self.waiting, self.requests = [], deque(), {}

    def add_request(self, request):
        request.status = "WAITING"
        self.requests[request.request_id] = request
        self.waiting.append(request)

    def _preempt_request(self, request):
        self.running.remove(request)
        self.kv.free(request)
        request.status, request.num_computed_tokens = "PREEMPTED", 0
        request.num_preemptions += 1
        self.waiting.appendleft(request)

    def schedule(self):
        scheduled, preempted = {}, set()
        budget = self.max_tokens_per_step
        stop = False
        for request in list(self.running):
            if stop or budget <= 0:
                break
            if request.request_id in preempted:
                continue  # preempted earlier in this step to make room
            n = min(request.num_tokens - request.num_computed_tokens, budget,
                    self.max_model_len - request.num_computed_tokens - 1)
            if n <= 0:
                continue
            while self.kv.allocate_slots(request, n) is None:
                victim = self.running[-1]
                self._preempt_request(victim)
                preempted.add(victim.request_id)
                if victim is request:
                    stop = True
                    break
            if stop:
                break
            scheduled[request.request_id] = n
            request.num_computed_tokens += n  # counted as computed at once (vLLM: _update_after_schedule)
            budget -= n
        while not preempted and budget > 0 and self.waiting and len(self.running) < self.max_num_seqs:
            request = self.waiting[0]
            blocks, hit = self.kv.get_computed_blocks(request)
            n = min(request.num_tokens - hit, budget)
            if self.kv.allocate_slots(request, n, hit, blocks, full_sequence_must_fit=True) is None:
                break
            self.waiting.popleft()
            self.running.append(request)
            request.status, request.num_computed_tokens = "RUNNING", hit + n
            scheduled[request.request_id] = n
            budget -= n
        return self._finish_plan(scheduled, preempted)

    def _finish_plan(self, scheduled, preempted):
        return SimpleNamespace(num_scheduled_tokens=scheduled, preempted_req_ids=preempted,
                               total_num_scheduled_tokens=sum(scheduled.values()))

    def update_from_output(self, scheduler_output, sampled_token_ids):
        done = []
        for rid in scheduler_output.num_scheduled_tokens:
            r = self.requests[rid]
            got = sampled_token_ids.get(rid, [])
            for t in got:
                r.append_output_token_ids(t)
            if got and (len(r.output_token_ids) >= r.max_tokens or r.num_tokens >= self.max_model_len):
                r.status = "FINISHED"
                self.running.remove(r)
                self.kv.free(r)
                done.append(r)
        return done
