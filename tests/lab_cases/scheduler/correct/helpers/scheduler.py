"""Correct variant: the step split into helpers that return what they scheduled."""
from collections import deque


class SchedulerOutput:
    def __init__(self):
        self.num_scheduled_tokens = {}
        self.preempted_req_ids = set()


class Scheduler:
    def __init__(self, kv_cache_manager, max_num_seqs, max_num_batched_tokens, max_model_len):
        self.kv = kv_cache_manager
        self.max_seqs, self.budget, self.max_len = max_num_seqs, max_num_batched_tokens, max_model_len
        self.requests, self.waiting, self.running = {}, deque(), []

    def add_request(self, request):
        request.status = "WAITING"
        self.requests[request.request_id] = request
        self.waiting.append(request)

    def _preempt_request(self, request):
        self.kv.free(request)
        request.num_computed_tokens = 0
        request.status = "PREEMPTED"
        request.num_preemptions += 1
        self.waiting.appendleft(request)

    def _fit_running(self, request, n, out):
        """Allocate for `request`, preempting from the tail; False if it was preempted itself."""
        while self.kv.allocate_slots(request, n) is None:
            victim = self.running.pop()
            self._preempt_request(victim)
            out.preempted_req_ids.add(victim.request_id)
            if victim is request:
                return False
        return True

    def _schedule_running(self, out, budget):
        i = 0
        while i < len(self.running) and budget > 0:
            r = self.running[i]
            n = min(r.num_tokens - r.num_computed_tokens, budget, self.max_len - r.num_computed_tokens - 1)
            if n > 0:
                if not self._fit_running(r, n, out):
                    break
                out.num_scheduled_tokens[r.request_id] = n
                budget -= n
            i += 1
        return budget

    def _schedule_waiting(self, out, budget):
        while budget > 0 and self.waiting and len(self.running) < self.max_seqs:
            r = self.waiting[0]
            hit_blocks, hit = self.kv.get_computed_blocks(r)
            n = min(r.num_tokens - hit, budget)
            if self.kv.allocate_slots(r, n, hit, hit_blocks, full_sequence_must_fit=True) is None:
                return
            self.running.append(self.waiting.popleft())
            r.status, r.num_computed_tokens = "RUNNING", hit
            out.num_scheduled_tokens[r.request_id] = n
            budget -= n

    def schedule(self):
        out = SchedulerOutput()
        budget = self._schedule_running(out, self.budget)
        if not out.preempted_req_ids:
            self._schedule_waiting(out, budget)
        for rid, n in out.num_scheduled_tokens.items():
            self.requests[rid].num_computed_tokens += n
        return out

    def update_from_output(self, scheduler_output, sampled_token_ids):
        done = []
        for rid in scheduler_output.num_scheduled_tokens:
            r = self.requests[rid]
            toks = sampled_token_ids.get(rid, [])
            for t in toks:
                r.append_output_token_ids(t)
            if toks and (len(r.output_token_ids) >= r.max_tokens or r.num_tokens >= self.max_len):
                r.status = "FINISHED"
                self.running.remove(r)
                self.kv.free(r)
                done.append(r)
        return done
