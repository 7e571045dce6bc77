"""The block-pool lab's criteria, run on the learner's block_pool.py by zero2vllm.labs.runner.

The interface is vLLM's (see the scaffold's README): KVCacheBlock, FreeKVCacheBlockQueue,
hash_block_tokens, BlockPool and KVCacheManager. Every criterion drives the learner's classes
through requests (replay.Request) and judges what they did, never how.
"""

from __future__ import annotations

import os
import random

from zero2vllm.labs.block_pool.replay import Request, block_ids, count_evictions, first_difference, replay
from zero2vllm.labs.framework import CheckFailed, criterion

RECORDED = os.path.join(os.path.dirname(__file__), "recorded_vllm.json.gz")


def need(mod, *names):
    for name in names:
        if not hasattr(mod, name):
            raise CheckFailed(f"block_pool.py has no {name}",
                              hint="keep the scaffold's names: KVCacheBlock, FreeKVCacheBlockQueue, "
                                   "hash_block_tokens, BlockPool, KVCacheManager")


def ids(blocks) -> list[int]:
    return [b.block_id for b in blocks]


def queue_ids(mgr) -> list[int]:
    return ids(mgr.block_pool.free_block_queue.get_all_free_blocks())


# -- 1. the free queue --------------------------------------------------------------------------
@criterion("free queue")
def free_queue(ctx):
    mod = ctx.module
    need(mod, "KVCacheBlock", "FreeKVCacheBlockQueue")
    blocks = [mod.KVCacheBlock(i) for i in range(6)]
    q = mod.FreeKVCacheBlockQueue(blocks)

    def expect(want, what):
        got = ids(q.get_all_free_blocks())
        if got != want or q.num_free_blocks != len(want):
            raise CheckFailed(f"the free queue is wrong after {what}", expected=f"{want} ({len(want)} free)",
                              got=f"{got} ({q.num_free_blocks} free)")

    expect([0, 1, 2, 3, 4, 5], "FreeKVCacheBlockQueue(blocks 0..5)")
    first = q.popleft()
    if first.block_id != 0:
        raise CheckFailed("popleft() must take the head (the least recently freed block)",
                          expected="block 0", got=f"block {first.block_id}",
                          hint="a FIFO queue: hand out from the front, give back at the tail")
    expect([1, 2, 3, 4, 5], "popleft()")
    q.remove(blocks[3])
    expect([1, 2, 4, 5], "remove(block 3) from the middle")
    q.append(blocks[3])
    expect([1, 2, 4, 5, 3], "append(block 3)")
    q.append(first)
    expect([1, 2, 4, 5, 3, 0], "append(block 0)")
    got = ids(q.popleft_n(2))
    if got != [1, 2]:
        raise CheckFailed("popleft_n(2) must take the two head blocks in order", expected="[1, 2]", got=str(got))
    q.prepend_n([blocks[2], blocks[1]])
    expect([2, 1, 4, 5, 3, 0], "prepend_n([block 2, block 1])")
    q.remove(blocks[0])
    q.remove(blocks[2])
    expect([1, 4, 5, 3], "remove(block 0) at the tail and remove(block 2) at the head")
    for _ in range(4):
        q.popleft()
    expect([], "popping every block")
    try:
        q.popleft()
    except Exception:
        pass
    else:
        raise CheckFailed("popleft() on an empty queue returned something", hint="raise ValueError")
    return "FIFO order, O(1) remove from the middle, prepend_n/append_n keep their order"


# -- 2. hashes ----------------------------------------------------------------------------------
@criterion("block hashes")
def block_hashes(ctx):
    mod = ctx.module
    need(mod, "hash_block_tokens", "KVCacheManager")
    h = mod.hash_block_tokens
    a, b = h(None, [1, 2, 3, 4]), h(None, [1, 2, 3, 4])
    if a != b:
        raise CheckFailed("hash_block_tokens is not deterministic: equal blocks must hash equal")
    if h(None, [1, 2, 3, 5]) == a:
        raise CheckFailed("hash_block_tokens ignores the block's tokens")
    p1, p2 = h(None, [9, 9, 9, 9]), h(None, [8, 8, 8, 8])
    if h(p1, [5, 6, 7, 8]) == h(p2, [5, 6, 7, 8]):
        raise CheckFailed("parent hash not chained: the same tokens after different prefixes hash the same",
                          hint="hash (parent_block_hash, tuple(tokens)), so a hash names the whole prefix")
    # chained through the manager too: same second block after a different first block -> no hit
    mgr = mod.KVCacheManager(16, 4)
    first = Request("a", [9, 9, 9, 9, 5, 6, 7, 8, 1])
    alloc(mgr, first)
    other = Request("b", [8, 8, 8, 8, 5, 6, 7, 8, 1])
    blocks, hit = mgr.get_computed_blocks(other)
    if hit or blocks:
        raise CheckFailed("parent hash not chained: a request hit a block whose prefix differs",
                          expected="0 hit tokens", got=f"{hit} (blocks {ids(blocks)})")
    # only full blocks are cached, and a block is cached once it is full
    mgr = mod.KVCacheManager(16, 4)
    r = Request("a", list(range(10)))   # blocks [0..3] [4..7] [8, 9]
    alloc(mgr, r)
    probe = Request("p", list(range(10)) + [99, 98, 97])
    hit = mgr.get_computed_blocks(probe)[1]
    if hit != 8:
        raise CheckFailed("a request with the same 10 first tokens must hit the 2 full blocks only (8 tokens)",
                          expected="8 hit tokens", got=f"{hit}",
                          hint="hash and cache full blocks only; a partial block's contents still change")
    for t in (10, 11):  # two decode steps fill the third block
        r.all_token_ids.append(t)
        if mgr.allocate_slots(r, 1) is None:
            raise CheckFailed("allocate_slots(request, 1) failed with free blocks left")
        r.num_computed_tokens = r.num_tokens
    hit = mgr.get_computed_blocks(Request("q", list(range(12)) + [50]))[1]
    if hit != 12:
        raise CheckFailed("a block filled by decoding was not cached with its full contents",
                          expected="12 hit tokens (3 blocks) once the third block is full", got=f"{hit}",
                          hint="partial block hashed: cache a block only when it is full, "
                               "then with the hash of all its tokens (allocate_slots -> cache_blocks)")
    return "chained over the parent, full blocks only, cached as soon as they are full"


def alloc(mgr, req):
    blocks, hit = mgr.get_computed_blocks(req)
    got = mgr.allocate_slots(req, req.num_tokens - hit, hit, blocks)
    if got is None:
        raise CheckFailed(f"allocate_slots returned None for a {req.num_tokens}-token request in a pool with room")
    req.num_computed_tokens = req.num_tokens
    return hit


# -- 3. the prefix lookup ------------------------------------------------------------------------
@criterion("longest cached prefix")
def prefix_lookup(ctx):
    mod = ctx.module
    need(mod, "KVCacheManager")
    mgr = mod.KVCacheManager(16, 4)
    alloc(mgr, Request("a", list(range(12)) + [0]))
    cases = [
        (list(range(12)) + [7, 7], 12, "the same 3 full blocks, then new tokens"),
        (list(range(8)) + [100, 101, 102, 103, 104], 8, "2 equal blocks, then a different one"),
        ([100] + list(range(1, 13)), 0, "a different first token"),
        (list(range(12)), 8, "exactly the 12 cached tokens (the last token is always computed)"),
        (list(range(3)), 0, "3 tokens, under one block"),
    ]
    for tokens, want, what in cases:
        blocks, hit = mgr.get_computed_blocks(Request("x", tokens))
        if hit != want or len(blocks) * 4 != hit:
            hint = ("never take the last token from the cache: at most num_tokens - 1 tokens may hit, "
                    "so the model still computes logits for it") if tokens == list(range(12)) else \
                   "walk the full blocks' hashes from the start and stop at the first miss"
            raise CheckFailed(f"wrong prefix hit for {what}", expected=f"{want} tokens",
                              got=f"{hit} tokens, {len(blocks)} blocks", hint=hint)
    return "stops at the first miss, full blocks only, never the last token"


# -- 4. vLLM's design-doc example -----------------------------------------------------------------
# docs.vllm.ai/en/latest/design/prefix_caching/ "Example": block size 4, 10 blocks. Request 0 runs
# to 20 tokens and request 1 to 16, so every block they free is full and cached; that makes each
# free-queue order of the doc exact in vLLM 0.32 too (the doc's request 0 ends mid-block, and 0.32
# puts a freed block that was never cached at the front of the queue: checked at the end).
R0 = [100 + i for i in range(15)]
R1 = R0[:10] + [200, 201, 202, 203]
R2 = R0[:12] + [300 + i for i in range(17)]


def doc_steps(mod):
    mgr = mod.KVCacheManager(10, 4)
    evicted = count_evictions(mgr.block_pool)
    r0, r1, r2 = Request("0", R0), Request("1", R1), Request("2", R2)
    yield "time 1: request 0 (15 tokens) arrives", mgr, alloc(mgr, r0), {"blocks0": [0, 1, 2, 3], "hit": 0}
    for t in range(5):  # times 2-3: decoding fills block 3, then takes block 4 and fills it
        r0.all_token_ids.append(500 + t)
        if mgr.allocate_slots(r0, 1) is None:
            raise CheckFailed("allocate_slots(request 0, 1) failed with free blocks left")
        r0.num_computed_tokens = r0.num_tokens
    yield "time 3: request 0 decodes to 20 tokens (block 3 full and cached, block 4 allocated)", mgr, None, \
        {"blocks0": [0, 1, 2, 3, 4], "queue": [5, 6, 7, 8, 9]}
    yield "time 4: request 1 (14 tokens, the first 10 as request 0's) arrives", mgr, alloc(mgr, r1), \
        {"blocks1": [0, 1, 5, 6], "hit": 8, "queue": [7, 8, 9]}
    for t in range(2):
        r1.all_token_ids.append(600 + t)
        mgr.allocate_slots(r1, 1)
        r1.num_computed_tokens = r1.num_tokens
    mgr.free(r0)
    yield "time 5: request 0 finishes and is freed (blocks 4, 3, 2 go back in reverse order)", mgr, None, \
        {"queue": [7, 8, 9, 4, 3, 2]}
    mgr.free(r1)
    yield "time 6: request 1 finishes and is freed", mgr, None, {"queue": [7, 8, 9, 4, 3, 2, 6, 5, 1, 0]}
    blocks, hit = mgr.get_computed_blocks(r2)
    evicted[0] = 0
    got = mgr.allocate_slots(r2, r2.num_tokens - hit, hit, blocks)
    if got is None:
        raise CheckFailed("allocate_slots for request 2 (29 tokens, 12 hit) returned None; 8 blocks fit")
    yield "time 7: request 2 (29 tokens, the first 12 as request 0's) arrives", mgr, hit, \
        {"hit": 12, "blocks2": [0, 1, 2, 7, 8, 9, 4, 3], "queue": [6, 5], "evicted": 2, "evictions": evicted[0]}


def check_step(what, mgr, hit, want):
    got = {}
    for key, rid in (("blocks0", "0"), ("blocks1", "1"), ("blocks2", "2")):
        if key in want:
            got[key] = block_ids(mgr, rid)
    if "hit" in want:
        got["hit"] = hit
    if "queue" in want:
        got["queue"] = queue_ids(mgr)
    exp = {k: v for k, v in want.items() if k not in ("evicted", "evictions")}
    if got != exp:
        bad = [k for k in exp if got.get(k) != exp[k]]
        hints = {"queue": "free in reverse order (tail first) and append cached blocks at the tail; "
                          "a hit on a free block removes it from the queue",
                 "hit": "the longest run of cached full blocks",
                 "blocks0": "new blocks come from the head of the free queue"}
        raise CheckFailed(f"design-doc example, {what}: {', '.join(bad)} differ from vLLM's doc",
                          expected=str({k: exp[k] for k in bad}), got=str({k: got.get(k) for k in bad}),
                          hint=hints.get(bad[0], hints["blocks0"].replace("blocks0", "")))


@criterion("design-doc example")
def design_doc(ctx):
    mod = ctx.module
    need(mod, "KVCacheManager")
    for what, mgr, hit, want in doc_steps(mod):
        check_step(what, mgr, hit, want)
        if "evicted" in want and want["evictions"] != want["evicted"]:
            raise CheckFailed("time 7: blocks 4 and 3 were cached and reused, so 2 evictions",
                              expected="2 evictions", got=str(want["evictions"]),
                              hint="get_new_blocks calls _maybe_evict_cached_block on every block it pops")
    # vLLM 0.32 (block_pool.py free_blocks): a freed block with no hash goes to the FRONT
    mgr = mod.KVCacheManager(10, 4)
    r0 = Request("0", R0 + [500, 501])           # 17 tokens: block 4 holds one token, never cached
    alloc(mgr, r0)
    mgr.free(r0)
    got = queue_ids(mgr)
    if got != [4, 5, 6, 7, 8, 9, 3, 2, 1, 0]:
        raise CheckFailed("vLLM 0.32 puts a freed block that was never cached at the front of the free queue",
                          expected="[4, 5, 6, 7, 8, 9, 3, 2, 1, 0] (17 tokens: block 4 partial, blocks 3-0 cached)",
                          got=str(got), hint="free_blocks: prepend_n the blocks without a hash, append_n the cached ones")
    return "times 1-7 of the doc exact (blocks, hits, free queue, evictions), and 0.32's uncached-first rule"


# -- 5. invariants ------------------------------------------------------------------------------
def check_invariants(mod, trace):
    mgr = mod.KVCacheManager(trace["num_blocks"], trace["block_size"])
    bs, pool = trace["block_size"], mgr.block_pool
    live, contents = {}, {}

    def fail(i, msg, hint=None):
        raise CheckFailed(f"random trace seed {trace['seed']} (block_size {bs}, {trace['num_blocks']} blocks), "
                          f"op {i} {trace['ops'][i][:2]}: {msg}", hint=hint)

    for i, op in enumerate(trace["ops"]):
        kind, rid = op[0], str(op[1])
        if kind == "add":
            req = Request(rid, op[2])
            blocks, hit = mgr.get_computed_blocks(req)
            if hit % bs or hit != len(blocks) * bs or hit > req.num_tokens - 1:
                fail(i, f"{hit} hit tokens with {len(blocks)} blocks for a {req.num_tokens}-token prompt",
                     "a hit is whole blocks, and never the last token")
            for j, b in enumerate(blocks):
                held = contents.get(b.block_id)
                want = tuple(req.all_token_ids[j * bs:(j + 1) * bs])
                if held is not None and len(held) < bs and held == want[:len(held)]:
                    fail(i, f"hit on a partial block: block {b.block_id} holds {len(held)} of {bs} tokens",
                         "cache full blocks only")
                if held != want:
                    fail(i, f"a hit returned block {b.block_id}, which holds other tokens now",
                         "evicting a block must remove its hash from the cache (and reset block_hash)")
            if mgr.allocate_slots(req, req.num_tokens - hit, hit, blocks) is not None:
                req.num_computed_tokens = req.num_tokens
                live[rid] = req
            else:
                mgr.free(req)
        elif rid in live and kind == "append":
            req = live[rid]
            req.append_output_token_ids(op[2])
            if mgr.allocate_slots(req, 1) is None:
                mgr.free(live.pop(rid))
            else:
                req.num_computed_tokens = req.num_tokens
        elif rid in live and kind == "free":
            mgr.free(live.pop(rid))
        # what every block holds, and who uses it
        users = {}
        for r in live.values():
            table = block_ids(mgr, r.request_id)
            if len(table) != -(-r.num_tokens // bs):
                fail(i, f"request {r.request_id} has {len(table)} blocks for {r.num_tokens} tokens",
                     "a request holds exactly ceil(num_tokens / block_size) blocks")
            for j, b in enumerate(table):
                users[b] = users.get(b, 0) + 1
                contents[b] = tuple(r.all_token_ids[j * bs:(j + 1) * bs])
        queue = queue_ids(mgr)
        if len(set(queue)) != len(queue):
            fail(i, f"double free: a block is in the free queue twice ({queue})")
        for b in pool.blocks:
            if b.ref_cnt < 0:
                fail(i, f"block {b.block_id} has ref_cnt {b.ref_cnt}", "free_blocks decrements once per user")
            if b.ref_cnt != users.get(b.block_id, 0):
                fail(i, f"block {b.block_id} has ref_cnt {b.ref_cnt} but {users.get(b.block_id, 0)} live requests use it",
                     "touch() adds one per hit, free_blocks() takes one per request freed")
        in_use = sum(1 for b in pool.blocks if b.ref_cnt > 0)
        free = pool.get_num_free_blocks()
        if free + in_use != trace["num_blocks"] or sorted(queue) != sorted(b.block_id for b in pool.blocks if b.ref_cnt == 0):
            fail(i, f"free ({free}) + in use ({in_use}) != {trace['num_blocks']} blocks, or the free queue "
                    f"is not exactly the blocks nobody uses",
                 "a block with ref_cnt 0 is in the free queue; every other block is not")


@criterion("invariants under random traces")
def invariants(ctx):
    from zero2vllm.labs._vllm_oracle.traces import block_pool_trace

    need(ctx.module, "KVCacheManager")
    n = 60 if ctx.fast else 300
    base = random.Random().randrange(10**6, 10**9)
    for seed in range(base, base + n):
        check_invariants(ctx.module, block_pool_trace(seed))
    return f"{n} random traces (seeds {base}..{base + n - 1}): ref counts, free queue, hits on full blocks"


# -- 6. the differential against vLLM -------------------------------------------------------------
@criterion("same steps as vLLM's KVCacheManager")
def differential(ctx):
    from zero2vllm.labs import _vllm_oracle as oracle
    from zero2vllm.labs._vllm_oracle.traces import block_pool_trace

    need(ctx.module, "KVCacheManager")
    return oracle.differential(ctx, "block-pool", block_pool_trace, RECORDED, compare, live=1000, fast=100)

def compare(mod, trace, want, source):
    diff = first_difference(trace, replay(mod, trace), want)
    if diff:
        raise CheckFailed(f"differs from vLLM ({source}) at {diff}",
                          hint="hit = tokens of the longest cached prefix, blocks from the free queue's head, "
                               "evicted = cached blocks reused, free = get_num_free_blocks()")
