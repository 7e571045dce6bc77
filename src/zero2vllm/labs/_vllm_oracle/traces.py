"""Seeded traces for the week-3 differential checks, and the JSON format both sides replay.

A block-pool trace is {"block_size", "num_blocks", "ops"}; each op is one of
    ["add", rid, prompt_tokens]   look up the longest cached prefix, allocate the rest
    ["append", rid, token]        one more token (a decode step): maybe a new block
    ["free", rid]                 the request finished: its blocks go back, tail first
An op on a request that is not live (never admitted, freed, or dropped when an append found no
block) is skipped on both sides. Results per op: {"hit", "ok", "blocks", "evicted", "free"}
(the keys that apply; "skip": true for a skipped op).

A scheduler trace is the scheduler's budgets, a pool size and requests arriving at given steps
(see scheduler_trace); each step's result is the tokens scheduled per request, the preempted and
finished request ids and the free block count.

Prompts are drawn from a few shared "documents", so requests share prefixes of different
lengths: hits, partial-block near misses and evictions all happen in a small pool.
"""

from __future__ import annotations

import random


def _prompt(rng: random.Random, docs: list[list[int]], block_size: int, vocab: int) -> list[int]:
    doc = rng.choice(docs)
    keep = rng.randint(0, len(doc))  # a shared prefix of any length, often mid-block
    tail = [rng.randrange(vocab) for _ in range(rng.randint(0 if keep else 1, 2 * block_size))]
    return doc[:keep] + tail


def block_pool_trace(seed: int, num_ops: int = 40) -> dict:
    rng = random.Random(seed)
    bs = rng.choice([2, 4, 4, 8])
    num_blocks = rng.randint(6, 16)
    vocab = rng.choice([3, 50])  # a tiny vocabulary makes accidental equal blocks (duplicates)
    docs = [[rng.randrange(vocab) for _ in range(rng.randint(bs, 4 * bs))] for _ in range(3)]
    ops, live, next_id = [], [], 0
    for _ in range(num_ops):
        r = rng.random()
        if not live or r < 0.35:
            ops.append(["add", next_id, _prompt(rng, docs, bs, vocab)])
            live.append(next_id)
            next_id += 1
        elif r < 0.75:
            ops.append(["append", rng.choice(live), rng.randrange(vocab)])
        else:
            rid = live.pop(rng.randrange(len(live)))
            ops.append(["free", rid])
    return {"seed": seed, "block_size": bs, "num_blocks": num_blocks, "ops": ops}


def scheduler_trace(seed: int) -> dict:
    rng = random.Random(seed)
    bs = rng.choice([4, 8, 16])
    max_len = 16 * bs
    vocab = 50
    docs = [[rng.randrange(vocab) for _ in range(rng.randint(bs, 3 * bs))] for _ in range(2)]
    requests = []
    for i in range(rng.randint(2, 7)):
        prompt = _prompt(rng, docs, bs, vocab)[: max_len // 2]
        requests.append({"id": str(i), "prompt": prompt, "max_tokens": rng.randint(1, 3 * bs),
                         "arrival_step": rng.choice([0, 0, 0, rng.randint(1, 12)])})
    longest = max(len(r["prompt"]) + r["max_tokens"] for r in requests)
    budget = rng.choice([bs, 2 * bs, 3 * bs + 1, 64, 128])
    return {
        "seed": seed, "block_size": bs,
        # a small pool, often too small for everyone at once: preemption happens
        "num_blocks": rng.randint(-(-longest // bs) + 1, -(-longest // bs) + 8),
        "max_num_seqs": min(rng.randint(1, 5), budget),  # vLLM wants budget >= max_num_seqs
        "max_num_batched_tokens": budget,
        "max_model_len": max_len, "token": 7, "max_steps": 400, "requests": requests,
    }
