"""The learner's Scheduler behind the engine's Scheduler interface (engine/scheduler.py), so
`LLMEngine(..., scheduler_factory=learner_scheduler(module))` serves with their schedule().

The engine's block manager is the block-pool lab's reference behind LabBlockManager, so the
learner's scheduler gets the vLLM-style KVCacheManager it was written against (`bm.mgr`). Their
requests are views of the engine's Sequences with a num_computed_tokens of their own: their
schedule() counts scheduled tokens as computed at once (as vLLM does), while the engine's model
runner reads seq.num_computed_tokens as where this step's tokens start.
"""

from __future__ import annotations

from zero2vllm.engine.scheduler import ScheduledBatch
from zero2vllm.engine.sequence import Status


class _SchedRequest:
    def __init__(self, seq):
        self.seq = seq
        self.request_id = f"seq-{seq.seq_id}"
        self.all_token_ids = seq.token_ids          # shared: sampled tokens appear here
        self.prompt_token_ids = seq.token_ids[:seq.num_prompt_tokens]
        self.num_prompt_tokens = seq.num_prompt_tokens
        self.num_computed_tokens = 0
        self.max_tokens = seq.params.max_tokens
        self.status = "WAITING"
        self.num_preemptions = 0

    @property
    def num_tokens(self) -> int:
        return len(self.seq.token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        return self.seq.completion_token_ids

    def append_output_token_ids(self, token_id: int) -> None:
        raise RuntimeError("the engine appends sampled tokens itself (Sequence.append_token)")


class LabScheduler:
    def __init__(self, module, config, block_manager):
        self.block_manager = block_manager
        self.kv = block_manager.mgr
        self.sched = module.Scheduler(self.kv, max_num_seqs=config.max_num_seqs,
                                      max_num_batched_tokens=config.max_num_batched_tokens,
                                      max_model_len=config.max_model_len)
        self.views: dict[int, _SchedRequest] = {}
        self.num_preemptions = 0

    @property
    def waiting(self) -> list:
        return [r.seq for r in self.sched.waiting]

    @property
    def running(self) -> list:
        return [r.seq for r in self.sched.running]

    def add(self, seq) -> None:
        self.views[seq.seq_id] = view = _SchedRequest(seq)
        self.sched.add_request(view)

    def has_work(self) -> bool:
        return bool(self.sched.waiting or self.sched.running)

    def schedule(self) -> ScheduledBatch:
        out = self.sched.schedule()
        batch = ScheduledBatch()
        by_id = {v.request_id: v for v in self.views.values()}
        for rid in out.preempted_req_ids:
            seq = by_id[rid].seq
            seq.block_table, seq.num_computed_tokens, seq.num_cached_tokens = [], 0, 0
            seq.status = Status.WAITING
            seq.num_preemptions += 1
            self.num_preemptions += 1
            batch.preempted.append(seq)
        for rid, n in out.num_scheduled_tokens.items():
            view = by_id[rid]
            seq = view.seq
            seq.num_computed_tokens = view.num_computed_tokens - n   # where this step's tokens start
            seq.block_table = [b.block_id for b in self.kv.req_to_blocks[rid]]
            seq.status = Status.RUNNING
            batch.items.append((seq, n))
        batch.items.sort(key=lambda item: item[0].num_uncomputed_tokens != 1)  # decodes first
        return batch

    def postprocess(self, batch: ScheduledBatch, sampled: dict[int, int], eos_token_ids) -> list:
        finished = []
        for seq, n in batch.items:
            seq.num_computed_tokens += n
            if seq.seq_id in sampled:
                seq.append_token(sampled[seq.seq_id], eos_token_ids)
                if seq.is_finished:
                    self._drop(seq)
                    finished.append(seq)
        return finished

    def _drop(self, seq) -> None:
        view = self.views.pop(seq.seq_id)
        if view in self.sched.running:
            self.sched.running.remove(view)
        elif view in self.sched.waiting:
            self.sched.waiting.remove(view)
        self.sched.requests.pop(view.request_id, None)
        view.status = "FINISHED"
        self.kv.free(view)

    def abort(self, seq) -> None:
        if seq.seq_id in self.views:
            self._drop(seq)
        seq.status, seq.finish_reason = Status.FINISHED, "abort"


def learner_scheduler(module):
    return lambda config, block_manager: LabScheduler(module, config, block_manager)
