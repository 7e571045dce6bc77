"""Your block pool with prefix caching, as vLLM V1 does it (vLLM 0.32, one KV cache group).

Fill in every TODO; keep the names (the checks call them, and they are vLLM's). README.md says
what each piece does and which vLLM file it mirrors. Check it with `z2v check block-pool`.

A request is any object with `request_id`, `all_token_ids` (prompt then outputs), `num_tokens`
and `num_computed_tokens` (tokens whose K/V are already in its blocks).
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
    """Free blocks in eviction order: the head is handed out (and evicted) first.

    vLLM threads a doubly linked list through the blocks (prev_free_block / next_free_block), so
    removing a block from the middle is O(1); any structure with the same behaviour passes.
    """

    def __init__(self, blocks: list[KVCacheBlock]):
        # TODO: the blocks, in the given order; keep self.num_free_blocks up to date everywhere
        self.num_free_blocks = 0
        raise NotImplementedError("TODO: FreeKVCacheBlockQueue.__init__")

    def popleft(self) -> KVCacheBlock:
        raise NotImplementedError("TODO: take the head block (ValueError when empty)")

    def popleft_n(self, n: int) -> list[KVCacheBlock]:
        raise NotImplementedError("TODO: the n head blocks, in order")

    def remove(self, block: KVCacheBlock) -> None:
        raise NotImplementedError("TODO: take a block out of the middle (a prefix hit on a free block)")

    def append(self, block: KVCacheBlock) -> None:
        raise NotImplementedError("TODO: put a block at the tail")

    def append_n(self, blocks) -> None:
        raise NotImplementedError("TODO: put blocks at the tail, in order")

    def prepend_n(self, blocks: list[KVCacheBlock]) -> None:
        raise NotImplementedError("TODO: put blocks at the front, in order (blocks[0] becomes the head)")

    def get_all_free_blocks(self) -> list[KVCacheBlock]:
        raise NotImplementedError("TODO: every free block, head first")


def hash_block_tokens(parent_block_hash, curr_block_token_ids):
    """The hash of a full block, chained to its parent's hash (None for the first block)."""
    raise NotImplementedError("TODO: hash_block_tokens")


class BlockPool:
    def __init__(self, num_blocks: int, enable_caching: bool = True):
        self.enable_caching = enable_caching
        self.blocks = [KVCacheBlock(i) for i in range(num_blocks)]
        self.free_block_queue = FreeKVCacheBlockQueue(self.blocks)
        # TODO: a map from block hash to the cached block(s) with that hash. Two requests can
        # fill equal blocks; vLLM keeps both cached, and a lookup returns the first one cached.
        self.cached_block_hash_to_block: dict = {}

    def get_num_free_blocks(self) -> int:
        return self.free_block_queue.num_free_blocks

    def get_cached_block(self, block_hash) -> KVCacheBlock | None:
        raise NotImplementedError("TODO: the cached block with this hash, or None")

    def cache_full_blocks(self, blocks: list[KVCacheBlock], block_hashes: list, start: int, end: int) -> None:
        raise NotImplementedError("TODO: give blocks[start:end] their hashes and make them findable")

    def _maybe_evict_cached_block(self, block: KVCacheBlock) -> bool:
        """Before a free block is reused: drop it from the cache. Returns True if it was cached.
        get_new_blocks must call it for every block it hands out (the checks count evictions here)."""
        raise NotImplementedError("TODO: _maybe_evict_cached_block")

    def get_new_blocks(self, num_blocks: int) -> list[KVCacheBlock]:
        raise NotImplementedError("TODO: pop blocks from the free queue's head, evict, ref_cnt = 1")

    def touch(self, blocks: list[KVCacheBlock]) -> None:
        raise NotImplementedError("TODO: a prefix hit: one more user (a free block leaves the queue)")

    def free_blocks(self, ordered_blocks) -> None:
        """`ordered_blocks` comes in eviction order (the request's tail first)."""
        raise NotImplementedError("TODO: one user less; unused blocks go back to the free queue")


class KVCacheManager:
    def __init__(self, num_blocks: int, block_size: int, enable_caching: bool = True):
        self.block_size = block_size
        self.enable_caching = enable_caching
        self.block_pool = BlockPool(num_blocks, enable_caching)
        self.req_to_blocks: dict[str, list[KVCacheBlock]] = {}   # the checks read block ids here
        self.num_cached_block: dict[str, int] = {}               # of a request's blocks, how many are cached

    def get_computed_blocks(self, request) -> tuple[list[KVCacheBlock], int]:
        """The longest run of cached full blocks at the start of the request, and its tokens."""
        raise NotImplementedError("TODO: get_computed_blocks")

    def allocate_slots(self, request, num_new_tokens: int, num_new_computed_tokens: int = 0,
                       new_computed_blocks: list[KVCacheBlock] = ()) -> list[KVCacheBlock] | None:
        """Room for `num_new_tokens` more tokens after the request's computed tokens and the
        prefix hit (`new_computed_blocks`, `num_new_computed_tokens`); None if the pool is short.
        Returns the newly allocated blocks."""
        raise NotImplementedError("TODO: allocate_slots")

    def free(self, request) -> None:
        raise NotImplementedError("TODO: free the request's blocks, tail first")

    def get_block_ids(self, request_id: str) -> list[int]:
        return [b.block_id for b in self.req_to_blocks.get(request_id, [])]
