"""The learner's KVCacheManager behind the engine's BlockManager interface (engine/block_manager.py),
so `LLMEngine(..., block_manager_factory=learner_block_manager(module))` serves with their pool.

The engine asks "can this fit?" and then "do it" in two calls; vLLM's allocate_slots does both at
once. So the asking call allocates (or returns False having changed nothing), and the doing call
only copies the block ids into the sequence's block table. Prefix blocks are cached when
allocate_slots fills them, as in vLLM, so `register_full_blocks` has nothing left to do.
"""

from __future__ import annotations

import weakref


class _SeqRequest:
    """A Sequence seen as the request a KVCacheManager reads (its token list is shared, not copied)."""

    def __init__(self, seq):
        self._seq = seq
        self.request_id = f"seq-{seq.seq_id}"
        self.all_token_ids = seq.token_ids
        self.num_prompt_tokens = seq.num_prompt_tokens

    @property
    def num_tokens(self) -> int:
        return len(self._seq.token_ids)

    @property
    def num_computed_tokens(self) -> int:
        return self._seq.num_computed_tokens


class _BlockView:
    __slots__ = ("block_id", "hash")

    def __init__(self, block):
        self.block_id, self.hash = block.block_id, block.block_hash


class LabBlockManager:
    def __init__(self, module, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        self.mgr = module.KVCacheManager(num_blocks, block_size, enable_caching=enable_prefix_caching)
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.num_blocks = num_blocks
        self.prefix_queries = 0
        self.prefix_hits = 0
        self._requests: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _req(self, seq) -> _SeqRequest:
        req = self._requests.get(seq)
        if req is None:
            req = self._requests[seq] = _SeqRequest(seq)
        return req

    @property
    def num_free_blocks(self) -> int:
        return self.mgr.block_pool.get_num_free_blocks()

    @property
    def blocks(self) -> list[_BlockView]:
        return [_BlockView(b) for b in self.mgr.block_pool.blocks]

    def _table(self, seq) -> list[int]:
        return [b.block_id for b in self.mgr.req_to_blocks.get(self._req(seq).request_id, [])]

    # -- admitting ---------------------------------------------------------------------------
    def find_cached_prefix(self, seq) -> list:
        if not self.enable_prefix_caching:
            return []
        return list(self.mgr.get_computed_blocks(self._req(seq))[0])

    def can_admit(self, seq, cached: list, num_new_tokens: int) -> bool:
        got = self.mgr.allocate_slots(self._req(seq), num_new_tokens, len(cached) * self.block_size, cached)
        return got is not None

    def admit(self, seq, cached: list) -> None:
        seq.block_table = self._table(seq)
        seq.num_computed_tokens = seq.num_cached_tokens = len(cached) * self.block_size
        if self.enable_prefix_caching:
            self.prefix_queries += len(seq)
            self.prefix_hits += seq.num_cached_tokens

    # -- growing and shrinking -----------------------------------------------------------------
    def can_append(self, seq, num_new_tokens: int) -> bool:
        return self.mgr.allocate_slots(self._req(seq), num_new_tokens) is not None

    def append_slots(self, seq, num_new_tokens: int) -> None:
        seq.block_table = self._table(seq)

    def slot(self, seq, position: int) -> int:
        return seq.block_table[position // self.block_size] * self.block_size + position % self.block_size

    def register_full_blocks(self, seq, num_computed_before: int) -> None:
        pass  # allocate_slots cached them when it handed them out

    def free(self, seq) -> None:
        self.mgr.free(self._req(seq))


def learner_block_manager(module):
    """A block_manager_factory for LLMEngine that builds the learner's pool."""
    return lambda num_blocks, block_size, enable_prefix_caching=True: LabBlockManager(
        module, num_blocks, block_size, enable_prefix_caching)
