"""One request as the engine sees it: its tokens, how many have KV in the cache, its block table.

The whole engine is bookkeeping over these counters. A sequence holds `token_ids` (prompt, then
every generated token) and `num_computed_tokens`, the prefix whose K/V already sit in the cache.
Each step the scheduler asks the model to compute some of the rest: all of a short prompt, a
chunk of a long one, or the one newest token of a decoding sequence. There is no separate
"prefill" and "decode" state; a sequence is decoding when only its last token is uncomputed.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from enum import Enum, auto


class BadParam(ValueError):
    """A request the engine can never run; `param` names the field (the server's 400 says it)."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


@dataclass
class SamplingParams:
    """How to pick tokens and when to stop (the OpenAI API's knobs that the engine honours)."""

    temperature: float = 0.0      # 0 means greedy (argmax)
    max_tokens: int = 16
    min_tokens: int = 0           # EOS is masked out until this many tokens are generated
    ignore_eos: bool = False      # keep going past EOS (benchmarks use it for fixed lengths)
    stop_token_ids: tuple[int, ...] = ()

    def __post_init__(self):
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise BadParam("temperature", "temperature must be a finite number >= 0")
        if 0 < self.temperature < 1e-2:  # as vLLM: a tinier T overflows softmax(logits / T)
            self.temperature = 1e-2
        if self.max_tokens < 1:
            raise BadParam("max_tokens", "max_tokens must be >= 1")
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise BadParam("min_tokens", "min_tokens must be between 0 and max_tokens")

    def check(self, vocab_size: int) -> None:
        """The checks that need the model: every token id it names must exist."""
        if any(not 0 <= t < vocab_size for t in self.stop_token_ids):
            raise BadParam("stop_token_ids", f"stop_token_ids must be token ids in [0, {vocab_size})")


PENDING = -1  # a token the GPU sampled that the host has not read yet (async scheduling, llm_engine.py)


class Status(Enum):
    WAITING = auto()    # in the queue: not admitted yet, or preempted (its KV was dropped)
    RUNNING = auto()    # holds blocks; computed a bit more every step
    FINISHED = auto()


class Sequence:
    _ids = itertools.count()

    def __init__(self, token_ids: list[int], params: SamplingParams, request_id: str | None = None):
        if not token_ids:
            raise ValueError("a prompt needs at least one token")
        self.seq_id = next(Sequence._ids)
        self.request_id = request_id if request_id is not None else str(self.seq_id)
        self.token_ids = list(token_ids)
        self.num_prompt_tokens = len(token_ids)
        self.num_computed_tokens = 0      # tokens whose K/V are in the cache
        self.num_cached_tokens = 0        # of those, how many came from the prefix cache
        self.block_table: list[int] = []  # physical KV block ids, in order
        self.params = params
        self.status = Status.WAITING
        self.finish_reason: str | None = None  # "stop" (EOS / stop token), "length", "abort" or "error"
        self.error: str | None = None          # why a step failed for this sequence alone
        self.arrival_time = time.perf_counter()
        self.num_preemptions = 0

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def num_completion_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def completion_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens:]

    @property
    def last_token(self) -> int:
        return self.token_ids[-1]

    @property
    def num_uncomputed_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def is_finished(self) -> bool:
        return self.status == Status.FINISHED

    def append_token(self, token_id: int, eos_token_ids: tuple[int, ...]) -> None:
        """Add a sampled token and decide whether the sequence is done."""
        self.token_ids.append(token_id)
        if self.num_completion_tokens >= self.params.max_tokens:
            self.finish_reason = "length"
        elif self.stops_on(token_id, eos_token_ids):
            self.finish_reason = "stop"
        if self.finish_reason:
            self.status = Status.FINISHED

    def stops_on(self, token_id: int, eos_token_ids: tuple[int, ...]) -> bool:
        """Whether the newest token, `token_id`, ends the sequence (EOS unless ignore_eos; none before min_tokens)."""
        p = self.params
        return self.num_completion_tokens >= p.min_tokens and (
            token_id in p.stop_token_ids or (not p.ignore_eos and token_id in eos_token_ids))

    def __repr__(self) -> str:
        return (f"Sequence(id={self.seq_id}, tokens={len(self)}, computed={self.num_computed_tokens}, "
                f"blocks={self.block_table}, {self.status.name})")
