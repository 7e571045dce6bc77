"""Correct variant: a linked list with None ends (no fake blocks); hashes kept on the request, as
vLLM's Request.block_hashes; the manager's pieces split into small helpers."""


class KVCacheBlock:
    __slots__ = ("block_id", "ref_cnt", "block_hash", "prev_free_block", "next_free_block")

    def __init__(self, block_id):
        self.block_id = block_id
        self.ref_cnt = 0
        self.block_hash = None
        self.prev_free_block = self.next_free_block = None


class FreeKVCacheBlockQueue:
    def __init__(self, blocks):
        self.first = self.last = None
        self.num_free_blocks = 0
        for b in blocks:
            self.append(b)

    def popleft(self):
        if self.first is None:
            raise ValueError("free queue is empty")
        b = self.first
        self.remove(b)
        return b

    def popleft_n(self, n):
        return [self.popleft() for _ in range(n)]

    def remove(self, b):
        if b.prev_free_block is None:
            self.first = b.next_free_block
        else:
            b.prev_free_block.next_free_block = b.next_free_block
        if b.next_free_block is None:
            self.last = b.prev_free_block
        else:
            b.next_free_block.prev_free_block = b.prev_free_block
        b.prev_free_block = b.next_free_block = None
        self.num_free_blocks -= 1

    def append(self, b):
        b.prev_free_block, b.next_free_block = self.last, None
        if self.last is None:
            self.first = b
        else:
            self.last.next_free_block = b
        self.last = b
        self.num_free_blocks += 1

    def append_n(self, blocks):
        for b in blocks:
            self.append(b)

    def _push_front(self, b):
        b.prev_free_block, b.next_free_block = None, self.first
        if self.first is None:
            self.last = b
        else:
            self.first.prev_free_block = b
        self.first = b
        self.num_free_blocks += 1

    def prepend_n(self, blocks):
        for b in reversed(list(blocks)):
            self._push_front(b)

    def get_all_free_blocks(self):
        out, b = [], self.first
        while b is not None:
            out.append(b)
            b = b.next_free_block
        return out


def hash_block_tokens(parent_block_hash, curr_block_token_ids):
    return hash((parent_block_hash or 0, tuple(curr_block_token_ids)))


class BlockPool:
    def __init__(self, num_blocks, enable_caching=True):
        self.blocks = [KVCacheBlock(i) for i in range(num_blocks)]
        self.free_block_queue = FreeKVCacheBlockQueue(self.blocks)
        self.table = {}

    def get_num_free_blocks(self):
        return self.free_block_queue.num_free_blocks

    def get_cached_block(self, h):
        for b in self.table.get(h, {}).values():
            return b
        return None

    def cache_full_blocks(self, blocks, hashes, start, end):
        for b, h in zip(blocks[start:end], hashes[start:end]):
            b.block_hash = h
            self.table.setdefault(h, {})[b.block_id] = b

    def _maybe_evict_cached_block(self, b):
        if b.block_hash is None:
            return False
        entry = self.table[b.block_hash]
        entry.pop(b.block_id)
        if not entry:
            self.table.pop(b.block_hash)
        b.block_hash = None
        return True

    def get_new_blocks(self, n):
        out = self.free_block_queue.popleft_n(n)
        for b in out:
            self._maybe_evict_cached_block(b)
            b.ref_cnt += 1
        return out

    def touch(self, blocks):
        for b in blocks:
            if b.ref_cnt == 0:
                self.free_block_queue.remove(b)
            b.ref_cnt += 1

    def free_blocks(self, ordered_blocks):
        uncached, cached = [], []
        for b in ordered_blocks:
            b.ref_cnt -= 1
            if b.ref_cnt == 0:
                (uncached if b.block_hash is None else cached).append(b)
        self.free_block_queue.prepend_n(uncached)
        self.free_block_queue.append_n(cached)


class KVCacheManager:
    def __init__(self, num_blocks, block_size, enable_caching=True):
        self.block_size = block_size
        self.block_pool = BlockPool(num_blocks)
        self.req_to_blocks = {}
        self.num_cached_block = {}

    def _update_hashes(self, request):
        hashes = getattr(request, "z2v_block_hashes", None)
        if hashes is None:
            hashes = []
            request.z2v_block_hashes = hashes
        bs, toks = self.block_size, request.all_token_ids
        while bs * (len(hashes) + 1) <= len(toks):
            k = len(hashes)
            hashes.append(hash_block_tokens(hashes[k - 1] if k else None, toks[k * bs:(k + 1) * bs]))
        return hashes

    def get_computed_blocks(self, request):
        hashes = self._update_hashes(request)[:(request.num_tokens - 1) // self.block_size]
        got = []
        for h in hashes:
            b = self.block_pool.get_cached_block(h)
            if b is None:
                break
            got.append(b)
        return got, len(got) * self.block_size

    def _blocks_needed(self, rid, num_tokens, num_hit_blocks):
        return max(0, -(-num_tokens // self.block_size) - len(self.req_to_blocks.get(rid, [])) - num_hit_blocks)

    def allocate_slots(self, request, num_new_tokens, num_new_computed_tokens=0, new_computed_blocks=()):
        rid = request.request_id
        total = request.num_computed_tokens + num_new_computed_tokens + num_new_tokens
        n = self._blocks_needed(rid, total, len(new_computed_blocks))
        if n + sum(b.ref_cnt == 0 for b in new_computed_blocks) > self.block_pool.get_num_free_blocks():
            return None
        blocks = self.req_to_blocks.setdefault(rid, [])
        if new_computed_blocks:
            self.block_pool.touch(new_computed_blocks)
            blocks.extend(new_computed_blocks)
            self.num_cached_block[rid] = len(blocks)
        new = self.block_pool.get_new_blocks(n)
        blocks.extend(new)
        start, end = self.num_cached_block.get(rid, 0), min(total, request.num_tokens) // self.block_size
        if end > start:
            self.block_pool.cache_full_blocks(blocks, self._update_hashes(request), start, end)
            self.num_cached_block[rid] = end
        return new

    def free(self, request):
        self.num_cached_block.pop(request.request_id, None)
        self.block_pool.free_blocks(reversed(self.req_to_blocks.pop(request.request_id, [])))
