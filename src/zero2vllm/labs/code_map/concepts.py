"""The concepts of the code map: what the named code must do, as patterns on its source.

Patterns describe the behaviour, not one answer: any function that does the thing passes (the
scheduler's budget is spent in Scheduler.schedule and in helpers some versions split out).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ANCHOR = "vllm/v1/engine/core.py::EngineCore.step"


@dataclass(frozen=True)
class Concept:
    key: str
    question: str
    patterns: tuple[str, ...]  # all must match the symbol's source (re.S)
    does: str  # what the code must be seen doing, for the failure message


CONCEPTS = (
    Concept("token_budget", "Where is the scheduler's per-step token budget enforced?",
            (r"token_budget\s*-=",), "spend the step's token budget (token_budget -= ...)"),
    Concept("preempt_reset", "Where are a preempted request's computed tokens reset?",
            (r"\.num_computed_tokens\s*=\s*0\b", r"(?i)preempt"),
            "set a preempted request's num_computed_tokens back to 0"),
    Concept("lru_eviction", "Where does the block pool evict the least recently used block?",
            (r"popleft|_maybe_evict_cached_block\(|_remove_cached_block_hashes\(|cached_block_hash_to_block\.pop",),
            "take blocks from the head of the free queue or drop a cached block's hash"),
    Concept("block_hash_chain", "Where is a block's hash chained to its parent's?",
            (r"hash\w*\(\s*\(?[\w\s,]*?\b(parent|prev)\w*hash",),
            "hash a block's tokens together with its parent's (previous block's) hash"),
    Concept("step_calls", "What does EngineCore.step call between scheduling and updating?",
            (), "be called by EngineCore.step between schedule() and update_from_output()"),
)
BY_KEY = {c.key: c for c in CONCEPTS}


def does_it(concept: Concept, source: str) -> bool:
    return all(re.search(p, source, re.S) for p in concept.patterns)


def calls_between(step_source: str) -> set[str]:
    """Names called in STEP_SOURCE after `.schedule(` and before `.update_from_output(`."""
    start = re.search(r"\.schedule\(", step_source)
    end = re.search(r"\.update_from_output\(", step_source)
    if not start or not end or end.start() < start.end():
        return set()
    return set(re.findall(r"\.(\w+)\(", step_source[start.end():end.start()]))
