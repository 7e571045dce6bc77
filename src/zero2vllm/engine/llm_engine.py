"""The engine: requests in, tokens out, one `step()` at a time.

`step()` is the whole loop of a serving engine in four lines: the scheduler plans, the model
runner computes, the scheduler advances the sequences, finished ones leave. Everything else
here is bookkeeping that a server or a benchmark wants: tokenizing, counters, and the KV
utilisation numbers (tokens stored / slots allocated, against a contiguous allocator).

Async scheduling (vLLM's `--async-scheduling`), for greedy decode steps in CUDA graphs: a step
launches its forward pass, and only then reads the tokens of the step before it. Those tokens
were stood in for by PENDING (so the scheduler could plan this step without them) and the graph
read them on the GPU. The host's planning and bookkeeping thus run while the GPU computes. A
sequence found to have stopped was planned one step too many: that row is dropped.

This class is the engine's one door: the server and the trace call `make_sequence`/`add`,
`abort`/`abort_all`, `step` and `metrics()`, never the scheduler or the block manager.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .block_manager import BlockManager
from .config import EngineConfig
from .model_runner import Launched, ModelRunner
from .scheduler import ScheduledBatch, Scheduler
from .sequence import PENDING, BadParam, SamplingParams, Sequence


@dataclass
class EngineStats:
    """Counters since start; the KV numbers are averages over steps that had running sequences."""

    steps: int = 0
    tokens_computed: int = 0          # prompt and decode tokens run through the model
    tokens_generated: int = 0
    requests_finished: int = 0
    busy_seconds: float = 0.0
    kv_steps: int = 0
    kv_util_sum: float = 0.0          # tokens stored / slots allocated by the paged cache
    contiguous_max_sum: float = 0.0   # tokens stored / slots a max_model_len-per-request cache holds
    contiguous_req_sum: float = 0.0   # ... / slots reserved for prompt + max_tokens per request

    def kv_summary(self) -> dict:
        n = max(self.kv_steps, 1)
        return {"paged": self.kv_util_sum / n, "contiguous_max_len": self.contiguous_max_sum / n,
                "contiguous_prompt_plus_max_tokens": self.contiguous_req_sum / n}


class LLMEngine:
    def __init__(self, config: EngineConfig, tokenizer=None, load_tokenizer: bool = True,
                 block_manager_factory=BlockManager, scheduler_factory=Scheduler):
        # the factories let a lab put the learner's block pool or scheduler in place of ours
        self.config = config
        if config.tensor_parallel_size > 1:  # one process per rank; rank 0 runs here (executor.py)
            from .executor import TPExecutor

            self.runner = TPExecutor(config)
        else:
            self.runner = ModelRunner(config)
        self.block_manager = block_manager_factory(self.runner.num_blocks, config.block_size,
                                                   config.enable_prefix_caching)
        self.scheduler = scheduler_factory(config, self.block_manager)
        if self.runner.num_blocks * config.block_size < config.max_model_len:
            config.max_model_len = self.runner.num_blocks * config.block_size  # a lone request must fit
        self.tokenizer = tokenizer
        if tokenizer is None and load_tokenizer and config.model:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(config.model)
        eos = set(config.model_config.eos_token_ids)
        if self.tokenizer is not None and self.tokenizer.eos_token_id is not None:
            eos.add(self.tokenizer.eos_token_id)
        self.eos_token_ids = tuple(sorted(eos))
        self.stats = EngineStats()
        self.last_batch: ScheduledBatch | None = None
        self.async_scheduling = config.async_scheduling and hasattr(self.runner, "launch")
        self.inflight: Launched | None = None  # the step the GPU runs whose tokens are not read yet

    def add_request(self, prompt: str | list[int], params: SamplingParams | None = None,
                    request_id: str | None = None) -> Sequence:
        """Queue a request; raises ValueError (with the fix) when it can never run."""
        seq = self.make_sequence(prompt, params, request_id)
        self.add(seq)
        return seq

    def add(self, seq: Sequence) -> None:
        """Queue a sequence from `make_sequence` (which a server runs in another thread)."""
        self.scheduler.add(seq)

    def make_sequence(self, prompt: str | list[int], params: SamplingParams | None = None,
                      request_id: str | None = None) -> Sequence:
        """Tokenize and check a request without queueing it (safe to call from another thread)."""
        params = params or SamplingParams()
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError("this engine has no tokenizer: send the prompt as token ids")
            token_ids = self.tokenizer(prompt).input_ids
        else:
            token_ids = list(prompt)
        vocab = self.config.model_config.vocab_size
        if not token_ids or not all(isinstance(t, int) and 0 <= t < vocab for t in token_ids):
            raise BadParam("prompt", f"the prompt must be non-empty, with token ids in [0, {vocab})")
        params.check(vocab)
        limit = self.config.max_model_len
        if len(token_ids) + params.max_tokens > limit:
            raise BadParam("max_tokens", f"prompt ({len(token_ids)} tokens) + max_tokens ({params.max_tokens}) "
                           f"exceeds the engine's max_model_len of {limit}; shorten one of them")
        return Sequence(token_ids, params, request_id)

    def abort(self, seq: Sequence) -> None:
        self.scheduler.abort(seq)

    def abort_all(self) -> list[Sequence]:
        """Drop every queued and running sequence (a step failed outside any one sequence)."""
        seqs = [*self.scheduler.running, *self.scheduler.waiting]
        for seq in seqs:
            self.scheduler.abort(seq)
        self.inflight = None
        return seqs

    def metrics(self) -> dict:
        """The numbers a server's /metrics and a trace show, read in one place."""
        bm, sched = self.block_manager, self.scheduler
        return {"running": len(sched.running), "waiting_ids": [s.seq_id for s in sched.waiting],
                "num_blocks": bm.num_blocks, "free_blocks": bm.num_free_blocks, "block_size": bm.block_size,
                "hashed_blocks": [b.block_id for b in bm.blocks if b.hash is not None],
                "preemptions": sched.num_preemptions, "prefix_queries": bm.prefix_queries,
                "prefix_hits": bm.prefix_hits, "stats": self.stats}

    def shutdown(self) -> None:
        """Stop the other ranks' processes (tensor parallelism); nothing to do on one rank."""
        if hasattr(self.runner, "shutdown"):
            self.runner.shutdown()

    def has_work(self) -> bool:
        return self.inflight is not None or self.scheduler.has_work()

    def step(self) -> list[Sequence]:
        """Plan, compute, advance. Returns the sequences that got a new token (finished or not)."""
        started = time.perf_counter()
        prev, self.inflight = self.inflight, None
        if prev is not None:  # its sequences (less any aborted since) move past it now; tokens are read below
            prev.batch.items = [(seq, n) for seq, n in prev.batch.items if not seq.is_finished]
            pending = dict.fromkeys((seq.seq_id for seq, _ in prev.batch.items), PENDING)
            prev.finished = self.scheduler.postprocess(prev.batch, pending, self.eos_token_ids)
        batch = self.scheduler.schedule()
        self.last_batch = batch
        if batch and self.async_scheduling:  # launch returns None when this step must run the plain way
            self.inflight = self.runner.launch(batch)
        updated = self._resolve(prev, started) if prev is not None else []
        batch.items = [(seq, n) for seq, n in batch.items if not seq.is_finished]  # stopped in _resolve
        if self.inflight is not None or not batch:
            if not batch and not updated and self.scheduler.waiting and not self.scheduler.running:
                raise RuntimeError("the KV pool cannot hold the next request; raise num_kv_blocks")
            return updated
        try:
            sampled, failed = self.runner.run(batch, self.eos_token_ids), []
        except Exception:  # noqa: BLE001 - find who failed; the rest of the batch goes on
            sampled, failed = self._run_one_by_one(batch)
        finished = self.scheduler.postprocess(batch, sampled, self.eos_token_ids)
        self._count(batch, sampled, finished, time.perf_counter() - started)
        return updated + [seq for seq, _ in batch.items if seq.seq_id in sampled] + failed

    def _resolve(self, launched: Launched, started: float) -> list[Sequence]:
        """Read a launched step's tokens (waiting for the GPU) into the PENDING places it left."""
        tokens = launched.tokens()
        seqs = [seq for seq, _ in launched.batch.items]
        for seq in seqs:
            seq.token_ids[-1] = tokens[seq.seq_id]
            if seq.finish_reason is None and seq.stops_on(seq.token_ids[-1], self.eos_token_ids):
                self.scheduler.abort(seq)  # frees its blocks; in the step just launched, its row is dropped
                seq.finish_reason = "stop"
                launched.finished.append(seq)
        self._count(launched.batch, seqs, launched.finished, time.perf_counter() - started)
        return seqs

    def _run_one_by_one(self, batch: ScheduledBatch) -> tuple[dict, list[Sequence]]:
        """Rerun a failed step one sequence at a time; drop (finish_reason "error") those that fail alone."""
        sampled, kept, failed = {}, [], []
        for seq, n in batch.items:
            try:
                sampled.update(self.runner.run(ScheduledBatch([(seq, n)]), self.eos_token_ids))
                kept.append((seq, n))
            except Exception as exc:  # noqa: BLE001
                self.scheduler.abort(seq)
                seq.finish_reason, seq.error = "error", f"{type(exc).__name__}: {exc}"
                failed.append(seq)
        batch.items = kept
        return sampled, failed

    def _count(self, batch: ScheduledBatch, sampled: dict, finished: list, seconds: float) -> None:
        s = self.stats
        s.steps += 1
        s.busy_seconds += seconds
        s.tokens_generated += len(sampled)
        s.tokens_computed += batch.num_tokens
        s.requests_finished += len(finished)
        running = self.scheduler.running
        stored = sum(seq.num_computed_tokens for seq in running)
        if stored:
            bs = self.config.block_size
            s.kv_steps += 1
            s.kv_util_sum += stored / (bs * sum(len(seq.block_table) for seq in running))
            s.contiguous_max_sum += stored / (len(running) * self.config.max_model_len)
            s.contiguous_req_sum += stored / sum(seq.num_prompt_tokens + seq.params.max_tokens for seq in running)

    def generate(self, prompts: list[str | list[int]], params: SamplingParams | list[SamplingParams] | None = None,
                 ) -> list[dict]:
        """Offline batch generation: submit everything at once, step until done (like vLLM's LLM)."""
        params_list = params if isinstance(params, list) else [params or SamplingParams()] * len(prompts)
        seqs = [self.add_request(p, sp) for p, sp in zip(prompts, params_list)]
        while self.has_work():
            self.step()
        return [{"token_ids": s.completion_token_ids, "finish_reason": s.finish_reason,
                 "text": self.tokenizer.decode(s.completion_token_ids) if self.tokenizer else None}
                for s in seqs]
