"""A block pool with prefix caching, as vLLM V1 does it (vLLM 0.32, one KV cache group).

Four pieces, each named after the vLLM class or function it mirrors:

    KVCacheBlock           v1/core/kv_cache_utils.py    one block's id, ref count and hash
    FreeKVCacheBlockQueue  v1/core/kv_cache_utils.py    free blocks, least recently used first
    hash_block_tokens      v1/core/kv_cache_utils.py    a full block's hash, chained to its parent
    BlockPool              v1/core/block_pool.py        allocate, touch, free, cache, evict
    KVCacheManager         v1/core/kv_cache_manager.py  + single_type_kv_cache_manager.py:
                                                        what the scheduler calls per request

A request here is any object with `request_id`, `all_token_ids` (prompt then outputs),
`num_tokens` and `num_computed_tokens` (tokens whose K/V are already in its blocks).
"""

from __future__ import annotations


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


class KVCacheBlock:
    def __init__(self, block_id: int):
        self.block_id = block_id
        self.ref_cnt = 0            # requests using the block now
        self.block_hash = None      # set when the block is full and cached; reset on eviction
        self.prev_free_block: KVCacheBlock | None = None  # links of the free queue
        self.next_free_block: KVCacheBlock | None = None

    def __repr__(self) -> str:
        return f"KVCacheBlock({self.block_id}, ref_cnt={self.ref_cnt}, hash={self.block_hash!r})"


class FreeKVCacheBlockQueue:
    """A doubly linked list threaded through the blocks themselves, between two fake ends.

    The head is the next block to hand out (and so to evict, if it is cached). Removing a block
    from the middle, which a prefix-cache hit on a free block does, is O(1).
    """

    def __init__(self, blocks: list[KVCacheBlock]):
        self.head, self.tail = KVCacheBlock(-1), KVCacheBlock(-1)
        self.head.next_free_block, self.tail.prev_free_block = self.tail, self.head
        self.num_free_blocks = 0
        self.append_n(blocks)

    def popleft(self) -> KVCacheBlock:
        if self.num_free_blocks == 0:
            raise ValueError("No free blocks available")
        block = self.head.next_free_block
        self.remove(block)
        return block

    def popleft_n(self, n: int) -> list[KVCacheBlock]:
        return [self.popleft() for _ in range(n)]

    def remove(self, block: KVCacheBlock) -> None:
        block.prev_free_block.next_free_block = block.next_free_block
        block.next_free_block.prev_free_block = block.prev_free_block
        block.prev_free_block = block.next_free_block = None
        self.num_free_blocks -= 1

    def _insert_before(self, anchor: KVCacheBlock, block: KVCacheBlock) -> None:
        prev = anchor.prev_free_block
        prev.next_free_block, block.prev_free_block = block, prev
        block.next_free_block, anchor.prev_free_block = anchor, block
        self.num_free_blocks += 1

    def append(self, block: KVCacheBlock) -> None:
        self._insert_before(self.tail, block)

    def append_n(self, blocks) -> None:
        for block in blocks:
            self.append(block)

    def prepend_n(self, blocks: list[KVCacheBlock]) -> None:
        """Put blocks at the front, in the given order (the first one is handed out first)."""
        first = self.head.next_free_block
        for block in blocks:
            self._insert_before(first, block)

    def get_all_free_blocks(self) -> list[KVCacheBlock]:
        out, block = [], self.head.next_free_block
        while block is not self.tail:
            out.append(block)
            block = block.next_free_block
        return out


def hash_block_tokens(parent_block_hash, curr_block_token_ids):
    """The hash of a full block: its tokens and its parent's hash, so it names the whole prefix.

    vLLM hashes with sha256 by default (no collisions across tenants); Python's hash of a tuple
    of ints is deterministic and enough here. The parent of the first block is None.
    """
    return hash((parent_block_hash, tuple(curr_block_token_ids)))


class BlockPool:
    def __init__(self, num_blocks: int, enable_caching: bool = True):
        self.enable_caching = enable_caching
        self.blocks = [KVCacheBlock(i) for i in range(num_blocks)]
        self.free_block_queue = FreeKVCacheBlockQueue(self.blocks)
        # hash -> {block_id: block}: two requests may fill equal blocks (vLLM does not
        # de-duplicate, so block tables stay append-only); a lookup takes the first one cached
        self.cached_block_hash_to_block: dict = {}

    def get_num_free_blocks(self) -> int:
        return self.free_block_queue.num_free_blocks

    def get_cached_block(self, block_hash) -> KVCacheBlock | None:
        blocks = self.cached_block_hash_to_block.get(block_hash)
        return next(iter(blocks.values())) if blocks else None

    def cache_full_blocks(self, blocks: list[KVCacheBlock], block_hashes: list, start: int, end: int) -> None:
        """Make blocks[start:end] (now full) findable by their hashes."""
        for i in range(start, end):
            block = blocks[i]
            block.block_hash = block_hashes[i]
            self.cached_block_hash_to_block.setdefault(block.block_hash, {})[block.block_id] = block

    def _maybe_evict_cached_block(self, block: KVCacheBlock) -> bool:
        """Before a free block is reused: drop it from the cache. True if it was cached."""
        if block.block_hash is None:
            return False
        blocks = self.cached_block_hash_to_block.get(block.block_hash, {})
        blocks.pop(block.block_id, None)
        if not blocks:
            self.cached_block_hash_to_block.pop(block.block_hash, None)
        block.block_hash = None
        return True

    def get_new_blocks(self, num_blocks: int) -> list[KVCacheBlock]:
        if num_blocks > self.get_num_free_blocks():
            raise ValueError(f"Cannot get {num_blocks} free blocks from the pool")
        blocks = self.free_block_queue.popleft_n(num_blocks)
        for block in blocks:
            if self.enable_caching:
                self._maybe_evict_cached_block(block)
            block.ref_cnt += 1
        return blocks

    def touch(self, blocks: list[KVCacheBlock]) -> None:
        """A prefix hit: one more user; a free (ref 0) block leaves the free queue."""
        for block in blocks:
            if block.ref_cnt == 0:
                self.free_block_queue.remove(block)
            block.ref_cnt += 1

    def free_blocks(self, ordered_blocks) -> None:
        """Drop one reference from each block; blocks nobody uses go back to the free queue.

        `ordered_blocks` comes in eviction order (a request's tail first). Cached blocks join the
        tail, so they are evicted last and least recently used first; blocks with no hash can
        never be hit, so vLLM 0.32 puts them at the front, to be reused first.
        """
        uncached, cached = [], []
        for block in ordered_blocks:
            block.ref_cnt -= 1
            if block.ref_cnt == 0:
                (cached if block.block_hash is not None and self.enable_caching else uncached).append(block)
        self.free_block_queue.prepend_n(uncached)
        self.free_block_queue.append_n(cached)


class KVCacheManager:
    def __init__(self, num_blocks: int, block_size: int, enable_caching: bool = True):
        self.block_size = block_size
        self.enable_caching = enable_caching
        self.block_pool = BlockPool(num_blocks, enable_caching)
        self.req_to_blocks: dict[str, list[KVCacheBlock]] = {}
        self.num_cached_block: dict[str, int] = {}   # of a request's blocks, how many are cached
        self.req_to_block_hashes: dict[str, list] = {}

    def block_hashes(self, request) -> list:
        """The hashes of the request's full blocks, extended as it grows (vLLM: request.block_hashes)."""
        # kept only while the request holds blocks: a new request may reuse an old id
        known = request.request_id in self.req_to_blocks
        hashes = self.req_to_block_hashes.setdefault(request.request_id, []) if known else []
        tokens, bs = request.all_token_ids, self.block_size
        while (len(hashes) + 1) * bs <= len(tokens):
            i = len(hashes)
            hashes.append(hash_block_tokens(hashes[-1] if hashes else None, tokens[i * bs:(i + 1) * bs]))
        return hashes

    def get_computed_blocks(self, request) -> tuple[list[KVCacheBlock], int]:
        """The longest run of cached full blocks at the start of the request, and its tokens.

        At most num_tokens - 1 tokens: the last one is always computed, for its logits.
        """
        if not self.enable_caching:
            return [], 0
        hits = []
        for block_hash in self.block_hashes(request)[:(request.num_tokens - 1) // self.block_size]:
            block = self.block_pool.get_cached_block(block_hash)
            if block is None:
                break  # hashes are chained: nothing after a miss can hit
            hits.append(block)
        return hits, len(hits) * self.block_size

    def allocate_slots(self, request, num_new_tokens: int, num_new_computed_tokens: int = 0,
                       new_computed_blocks: list[KVCacheBlock] = (),
                       full_sequence_must_fit: bool = False) -> list[KVCacheBlock] | None:
        """Room for `num_new_tokens` more tokens after the computed ones; None if the pool is short.

        `full_sequence_must_fit` (the scheduler's admission test): refuse unless the whole request,
        not just this chunk, would fit now.
        """
        rid = request.request_id
        req_blocks = self.req_to_blocks.setdefault(rid, [])
        num_computed = request.num_computed_tokens + num_new_computed_tokens
        # a hit on a free block takes it off the free queue too
        reviving = sum(1 for b in new_computed_blocks if b.ref_cnt == 0)
        free = self.block_pool.get_num_free_blocks()
        if full_sequence_must_fit:
            whole = max(cdiv(request.num_tokens, self.block_size) - len(req_blocks) - len(new_computed_blocks), 0)
            if whole + reviving > free:
                return None
        num_new_blocks = max(cdiv(num_computed + num_new_tokens, self.block_size)
                             - len(req_blocks) - len(new_computed_blocks), 0)
        if num_new_blocks + reviving > free:
            return None
        if new_computed_blocks:
            self.block_pool.touch(new_computed_blocks)
            req_blocks.extend(new_computed_blocks)
            self.num_cached_block[rid] = len(req_blocks)
        new_blocks = self.block_pool.get_new_blocks(num_new_blocks)
        req_blocks.extend(new_blocks)
        if self.enable_caching:  # blocks this step fills are cached now, so the same batch can hit them
            self.cache_blocks(request, min(num_computed + num_new_tokens, request.num_tokens))
        return new_blocks

    def cache_blocks(self, request, num_tokens: int) -> None:
        start = self.num_cached_block.get(request.request_id, 0)
        end = num_tokens // self.block_size
        if end > start:
            self.block_pool.cache_full_blocks(self.req_to_blocks[request.request_id],
                                              self.block_hashes(request), start, end)
            self.num_cached_block[request.request_id] = end

    def free(self, request) -> None:
        """Tail first: the tail hashes the longest prefix, so it is the least likely to be hit."""
        blocks = self.req_to_blocks.pop(request.request_id, [])
        self.num_cached_block.pop(request.request_id, None)
        self.req_to_block_hashes.pop(request.request_id, None)
        self.block_pool.free_blocks(reversed(blocks))

    def get_block_ids(self, request_id: str) -> list[int]:
        return [b.block_id for b in self.req_to_blocks.get(request_id, [])]
