"""The paged KV cache's bookkeeping: which physical block holds which sequence's tokens.

The KV pool itself (in model_runner.py) is one big tensor per layer cut into `num_blocks` blocks
of `block_size` token slots. This class never touches tensors; it hands out block ids:

- a free list (a dict used as an ordered set: the oldest freed block is reused first),
- a reference count per block, so several sequences can share one block,
- a block table per sequence (`seq.block_table`): logical block i -> physical block id.

Prefix caching (vLLM's "automatic prefix caching"): once a block is full, it gets a hash of its
tokens chained with the hash of the block before it, so the hash names the whole prefix. A new
sequence whose first blocks hash the same (and whose tokens match, checked on every hit) reuses
those blocks instead of computing them. A block whose last user finishes goes back to the free
list but keeps its hash, so it can still be hit until it is actually reused ("reclaimed lazily").
"""

from __future__ import annotations

from .sequence import Sequence


class Block:
    __slots__ = ("block_id", "ref_count", "hash", "token_ids")

    def __init__(self, block_id: int):
        self.block_id = block_id
        self.ref_count = 0
        self.hash: int | None = None              # set once the block is full and computed
        self.token_ids: tuple[int, ...] | None = None


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free_ids: dict[int, None] = dict.fromkeys(range(num_blocks))
        self.hash_to_block: dict[int, int] = {}
        self.prefix_queries = 0   # prompt tokens looked up in the prefix cache
        self.prefix_hits = 0      # of those, tokens found

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_ids)

    def _take_free_block(self) -> int:
        block_id = next(iter(self.free_ids))  # the least recently freed
        del self.free_ids[block_id]
        block = self.blocks[block_id]
        if block.hash is not None and self.hash_to_block.get(block.hash) == block_id:
            del self.hash_to_block[block.hash]  # evict: its old contents are about to be overwritten
        block.hash, block.token_ids, block.ref_count = None, None, 1
        return block_id

    def _chain_hash(self, prev_hash: int | None, tokens: tuple[int, ...]) -> int:
        return hash((prev_hash, tokens))

    # -- admitting a sequence --------------------------------------------------------------

    def find_cached_prefix(self, seq: Sequence) -> list[int]:
        """Block ids that already hold this sequence's leading full blocks (longest prefix hit).

        The last token is never taken from the cache: the model must compute at least one token
        to produce the logits for the next one.
        """
        if not self.enable_prefix_caching:
            return []
        bs, hits, h = self.block_size, [], None
        for i in range((len(seq) - 1) // bs):
            tokens = tuple(seq.token_ids[i * bs:(i + 1) * bs])
            h = self._chain_hash(h, tokens)
            block_id = self.hash_to_block.get(h)
            if block_id is None or self.blocks[block_id].token_ids != tokens:  # miss, or a collision
                break
            hits.append(block_id)
        return hits

    def can_admit(self, seq: Sequence, cached: list[int], num_new_tokens: int) -> bool:
        """Enough free blocks for the cached prefix (if parked on the free list) and the new tokens?"""
        revived = sum(1 for b in cached if self.blocks[b].ref_count == 0)
        needed = -(-(len(cached) * self.block_size + num_new_tokens) // self.block_size) - len(cached)
        return revived + needed <= self.num_free_blocks

    def admit(self, seq: Sequence, cached: list[int]) -> None:
        """Give a waiting sequence its cached prefix blocks; its other blocks come from `append_slots`."""
        for block_id in cached:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self.free_ids[block_id]
            block.ref_count += 1
        seq.block_table = list(cached)
        seq.num_computed_tokens = seq.num_cached_tokens = len(cached) * self.block_size
        if self.enable_prefix_caching:
            self.prefix_queries += len(seq)
            self.prefix_hits += seq.num_cached_tokens

    # -- growing and shrinking -------------------------------------------------------------

    def blocks_needed(self, seq: Sequence, num_new_tokens: int) -> int:
        total = seq.num_computed_tokens + num_new_tokens
        return max(0, -(-total // self.block_size) - len(seq.block_table))

    def can_append(self, seq: Sequence, num_new_tokens: int) -> bool:
        return self.blocks_needed(seq, num_new_tokens) <= self.num_free_blocks

    def append_slots(self, seq: Sequence, num_new_tokens: int) -> None:
        """Make room for `num_new_tokens` more tokens of K/V (call `can_append` first)."""
        for _ in range(self.blocks_needed(seq, num_new_tokens)):
            seq.block_table.append(self._take_free_block())

    def slot(self, seq: Sequence, position: int) -> int:
        """Where token `position` of `seq` lives in the pool: block id * block_size + offset."""
        return seq.block_table[position // self.block_size] * self.block_size + position % self.block_size

    def register_full_blocks(self, seq: Sequence, num_computed_before: int) -> None:
        """After a step: hash the blocks this step filled, so later requests can share them."""
        if not self.enable_prefix_caching:
            return
        bs = self.block_size
        for i in range(num_computed_before // bs, seq.num_computed_tokens // bs):
            block = self.blocks[seq.block_table[i]]
            if block.hash is not None:
                continue  # a shared prefix block, registered by whoever computed it
            prev = self.blocks[seq.block_table[i - 1]].hash if i else None
            block.token_ids = tuple(seq.token_ids[i * bs:(i + 1) * bs])
            block.hash = self._chain_hash(prev, block.token_ids)
            self.hash_to_block[block.hash] = block.block_id

    def free(self, seq: Sequence) -> None:
        """Drop a sequence's claim on its blocks; unshared ones return to the free list, hash kept.

        The sequence keeps its (now stale) block table, so a finished one can still be inspected.
        """
        for block_id in reversed(seq.block_table):  # tail first: evicted before the shared head
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free_ids[block_id] = None
