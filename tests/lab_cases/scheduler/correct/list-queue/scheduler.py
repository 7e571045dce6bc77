"""Correct variant: plain lists for both queues; counts computed tokens at the end from a list."""


class SchedulerOutput:
    def __init__(self, scheduled, preempted):
        self.num_scheduled_tokens = scheduled
        self.preempted_req_ids = preempted


class Scheduler:
    def __init__(self, kv_cache_manager, max_num_seqs, max_num_batched_tokens, max_model_len):
        self.kv_cache_manager = kv_cache_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.max_model_len = max_model_len
        self.waiting = []
        self.running = []
        self.requests = {}

    def add_request(self, request):
        self.requests[request.request_id] = request
        request.status = "WAITING"
        self.waiting.append(request)

    def _preempt_request(self, request):
        self.kv_cache_manager.free(request)
        request.status = "PREEMPTED"
        request.num_computed_tokens = 0
        request.num_preemptions = request.num_preemptions + 1
        self.waiting.insert(0, request)

    def schedule(self):
        kv = self.kv_cache_manager
        left = self.max_num_batched_tokens
        plan = []          # (request, tokens) in scheduling order
        preempted = set()
        pos = 0
        while pos < len(self.running) and left > 0:
            req = self.running[pos]
            want = req.num_tokens - req.num_computed_tokens
            want = min(want, left, self.max_model_len - req.num_computed_tokens - 1)
            if want <= 0:
                pos += 1
                continue
            ok = kv.allocate_slots(req, want) is not None
            while not ok:
                last = self.running.pop()
                self._preempt_request(last)
                preempted.add(last.request_id)
                if last is req:
                    break
                ok = kv.allocate_slots(req, want) is not None
            if not ok:
                break
            plan.append((req, want))
            left -= want
            pos += 1
        if not preempted:
            while self.waiting and left > 0 and len(self.running) < self.max_num_seqs:
                req = self.waiting[0]
                blocks, cached = kv.get_computed_blocks(req)
                want = min(req.num_tokens - cached, left)
                if kv.allocate_slots(req, want, cached, blocks, full_sequence_must_fit=True) is None:
                    break
                self.waiting.pop(0)
                self.running.append(req)
                req.status = "RUNNING"
                req.num_computed_tokens = cached
                plan.append((req, want))
                left -= want
        for req, n in plan:
            req.num_computed_tokens += n
        return SchedulerOutput({r.request_id: n for r, n in plan}, preempted)

    def update_from_output(self, scheduler_output, sampled_token_ids):
        finished = []
        for rid in scheduler_output.num_scheduled_tokens:
            req = self.requests[rid]
            new = sampled_token_ids.get(rid) or []
            for tok in new:
                req.append_output_token_ids(tok)
            if new and (len(req.output_token_ids) >= req.max_tokens or req.num_tokens >= self.max_model_len):
                req.status = "FINISHED"
                self.running.remove(req)
                self.kv_cache_manager.free(req)
                finished.append(req)
        return finished
