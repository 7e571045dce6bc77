"""Continuous batching: every step, decide which sequences compute how many tokens.

The plan is remade from scratch every step (vLLM V1's design), under two budgets:
`max_num_batched_tokens` (tokens computed in one forward pass) and `max_num_seqs`.

1. Running sequences go first, oldest first. A decoding sequence needs 1 token; one whose
   prompt did not fit last step gets its next chunk. If the block pool is empty, the newest
   running sequence is preempted: its blocks are freed and it goes back to the head of the
   queue, to be recomputed later (vLLM's "recompute" preemption; its prefix-cached blocks
   often survive, so recomputing is cheap).
2. Then waiting requests, first come first served, while both budgets and the free blocks
   allow: each starts from its longest prefix-cache hit and computes the rest of its prompt
   (or as much as the token budget leaves: chunked prefill).

So one forward pass mixes new prompts with the decodes of running requests; a new request never
stalls the ones already generating, and the weights are read once for both.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .block_manager import BlockManager
from .config import EngineConfig
from .sequence import Sequence, Status


@dataclass
class ScheduledBatch:
    """One step's plan: (sequence, number of its tokens to compute now), decodes first."""

    items: list[tuple[Sequence, int]] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(n for _, n in self.items)

    def __bool__(self) -> bool:
        return bool(self.items)


class Scheduler:
    def __init__(self, config: EngineConfig, block_manager: BlockManager):
        self.max_num_seqs = config.max_num_seqs
        self.max_num_batched_tokens = config.max_num_batched_tokens
        self.block_manager = block_manager
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> ScheduledBatch:
        bm, batch = self.block_manager, ScheduledBatch()
        budget = self.max_num_batched_tokens
        # 1. running sequences, oldest first; preempt from the newest end when blocks run out
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            n = min(seq.num_uncomputed_tokens, budget)
            while not bm.can_append(seq, n) and self.running[-1] is not seq:
                batch.preempted.append(self._preempt(self.running.pop()))
            if not bm.can_append(seq, n):  # it is the newest one left: it yields too
                batch.preempted.append(self._preempt(self.running.pop()))
                break
            bm.append_slots(seq, n)
            batch.items.append((seq, n))
            budget -= n
            i += 1
        # 2. waiting sequences, in order, unless we just had to preempt (memory is tight)
        while self.waiting and not batch.preempted and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            cached = bm.find_cached_prefix(seq)
            n = min(len(seq) - len(cached) * bm.block_size, budget)
            if not bm.can_admit(seq, cached, n):
                break
            self.waiting.popleft()
            bm.admit(seq, cached)
            bm.append_slots(seq, n)
            seq.status = Status.RUNNING
            self.running.append(seq)
            batch.items.append((seq, n))
            budget -= n
        batch.items.sort(key=lambda item: item[0].num_uncomputed_tokens != 1)  # decodes first
        return batch

    def _preempt(self, seq: Sequence) -> Sequence:
        self.block_manager.free(seq)
        seq.block_table, seq.num_computed_tokens, seq.num_cached_tokens = [], 0, 0  # all its KV is gone
        seq.status = Status.WAITING
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)
        return seq

    def postprocess(self, batch: ScheduledBatch, sampled: dict[int, int], eos_token_ids) -> list[Sequence]:
        """Advance each sequence past the computed tokens, append sampled tokens, retire finished ones."""
        finished = []
        for seq, n in batch.items:
            before = seq.num_computed_tokens
            seq.num_computed_tokens += n
            self.block_manager.register_full_blocks(seq, before)
            if seq.seq_id in sampled:
                seq.append_token(sampled[seq.seq_id], eos_token_ids)
                if seq.is_finished:
                    self.block_manager.free(seq)
                    self.running.remove(seq)
                    finished.append(seq)
        return finished

    def abort(self, seq: Sequence) -> None:
        """Drop a request (its client went away), wherever it is."""
        if seq in self.running:
            self.running.remove(seq)
            self.block_manager.free(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        seq.status, seq.finish_reason = Status.FINISHED, "abort"
