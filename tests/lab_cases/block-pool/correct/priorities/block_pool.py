"""Correct variant: free blocks carry a priority number (smallest = head); SHA-1 of repr hashes."""
import hashlib
import itertools


class KVCacheBlock:
    def __init__(self, block_id):
        self.block_id = block_id
        self.ref_cnt = 0
        self.block_hash = None


class FreeKVCacheBlockQueue:
    """{block_id: (priority, block)}: append takes a rising number, prepend a falling one."""

    def __init__(self, blocks):
        self._back = itertools.count(0)
        self._front = itertools.count(-1, -1)
        self._prio = {}
        self.append_n(blocks)

    @property
    def num_free_blocks(self):
        return len(self._prio)

    def popleft(self):
        if not self._prio:
            raise ValueError("no free blocks")
        bid = min(self._prio, key=lambda k: self._prio[k][0])
        return self._prio.pop(bid)[1]

    def popleft_n(self, n):
        return [self.popleft() for _ in range(n)]

    def remove(self, block):
        self._prio.pop(block.block_id)

    def append(self, block):
        self._prio[block.block_id] = (next(self._back), block)

    def append_n(self, blocks):
        for b in blocks:
            self.append(b)

    def prepend_n(self, blocks):
        for b in reversed(list(blocks)):
            self._prio[b.block_id] = (next(self._front), b)

    def get_all_free_blocks(self):
        return [b for _, b in sorted(self._prio.values(), key=lambda pb: pb[0])]


def hash_block_tokens(parent_block_hash, curr_block_token_ids):
    return hashlib.sha1(repr((parent_block_hash, list(curr_block_token_ids))).encode()).hexdigest()


class BlockPool:
    def __init__(self, num_blocks, enable_caching=True):
        self.blocks = [KVCacheBlock(i) for i in range(num_blocks)]
        self.free_block_queue = FreeKVCacheBlockQueue(self.blocks)
        self.by_hash = {}  # hash -> list of blocks, oldest first
        self.enable_caching = enable_caching

    def get_num_free_blocks(self):
        return self.free_block_queue.num_free_blocks

    def get_cached_block(self, block_hash):
        found = self.by_hash.get(block_hash)
        return found[0] if found else None

    def cache_block(self, block, block_hash):
        block.block_hash = block_hash
        self.by_hash.setdefault(block_hash, []).append(block)

    def _maybe_evict_cached_block(self, block):
        h = block.block_hash
        if h is None:
            return False
        self.by_hash[h].remove(block)
        if not self.by_hash[h]:
            del self.by_hash[h]
        block.block_hash = None
        return True

    def get_new_blocks(self, num_blocks):
        if num_blocks > self.get_num_free_blocks():
            raise ValueError("pool too small")
        got = []
        for _ in range(num_blocks):
            b = self.free_block_queue.popleft()
            self._maybe_evict_cached_block(b)
            b.ref_cnt += 1
            got.append(b)
        return got

    def touch(self, blocks):
        for b in blocks:
            if not b.ref_cnt:
                self.free_block_queue.remove(b)
            b.ref_cnt += 1

    def free_blocks(self, ordered_blocks):
        released = []
        for b in ordered_blocks:
            b.ref_cnt -= 1
            if not b.ref_cnt:
                released.append(b)
        self.free_block_queue.prepend_n([b for b in released if b.block_hash is None])
        self.free_block_queue.append_n([b for b in released if b.block_hash is not None])


class KVCacheManager:
    def __init__(self, num_blocks, block_size, enable_caching=True):
        self.block_size = block_size
        self.block_pool = BlockPool(num_blocks, enable_caching)
        self.req_to_blocks = {}
        self.num_cached_block = {}

    def hashes_of(self, tokens, n):
        hs, h = [], None
        for i in range(n):
            h = hash_block_tokens(h, tokens[i * self.block_size:(i + 1) * self.block_size])
            hs.append(h)
        return hs

    def get_computed_blocks(self, request):
        hits = []
        for h in self.hashes_of(request.all_token_ids, (request.num_tokens - 1) // self.block_size):
            b = self.block_pool.get_cached_block(h)
            if not b:
                break
            hits.append(b)
        return hits, self.block_size * len(hits)

    def allocate_slots(self, request, num_new_tokens, num_new_computed_tokens=0, new_computed_blocks=()):
        rid, bs = request.request_id, self.block_size
        have = len(self.req_to_blocks.get(rid, ())) + len(new_computed_blocks)
        end = request.num_computed_tokens + num_new_computed_tokens + num_new_tokens
        new_n = max(0, (end + bs - 1) // bs - have)
        revive = len([b for b in new_computed_blocks if b.ref_cnt == 0])
        if new_n + revive > self.block_pool.get_num_free_blocks():
            return None
        blocks = self.req_to_blocks.setdefault(rid, [])
        if new_computed_blocks:
            self.block_pool.touch(new_computed_blocks)
            blocks += list(new_computed_blocks)
            self.num_cached_block[rid] = len(blocks)
        new = self.block_pool.get_new_blocks(new_n)
        blocks += new
        n_full = min(end, request.num_tokens) // bs
        start = self.num_cached_block.get(rid, 0)
        if n_full > start:
            hs = self.hashes_of(request.all_token_ids, n_full)
            for i in range(start, n_full):
                self.block_pool.cache_block(blocks[i], hs[i])
            self.num_cached_block[rid] = n_full
        return new

    def free(self, request):
        blocks = self.req_to_blocks.pop(request.request_id, [])
        self.num_cached_block.pop(request.request_id, None)
        self.block_pool.free_blocks(list(reversed(blocks)))
