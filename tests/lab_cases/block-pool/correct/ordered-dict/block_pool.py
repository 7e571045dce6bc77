"""Correct variant: the free queue is an OrderedDict; hashes are sha256 digests; no memo."""
import hashlib
import pickle
from collections import OrderedDict


class KVCacheBlock:
    def __init__(self, block_id):
        self.block_id, self.ref_cnt, self.block_hash = block_id, 0, None


class FreeKVCacheBlockQueue:
    def __init__(self, blocks):
        self._q = OrderedDict((b.block_id, b) for b in blocks)

    @property
    def num_free_blocks(self):
        return len(self._q)

    def popleft(self):
        if not self._q:
            raise ValueError("empty")
        return self._q.popitem(last=False)[1]

    def popleft_n(self, n):
        return [self.popleft() for _ in range(n)]

    def remove(self, block):
        del self._q[block.block_id]

    def append(self, block):
        self._q[block.block_id] = block

    def append_n(self, blocks):
        for b in blocks:
            self.append(b)

    def prepend_n(self, blocks):
        for b in reversed(list(blocks)):
            self._q[b.block_id] = b
            self._q.move_to_end(b.block_id, last=False)

    def get_all_free_blocks(self):
        return list(self._q.values())


def hash_block_tokens(parent_block_hash, curr_block_token_ids):
    return hashlib.sha256(pickle.dumps((parent_block_hash, tuple(curr_block_token_ids)))).digest()


class BlockPool:
    def __init__(self, num_blocks, enable_caching=True):
        self.blocks = [KVCacheBlock(i) for i in range(num_blocks)]
        self.free_block_queue = FreeKVCacheBlockQueue(self.blocks)
        self.cache = {}  # hash -> OrderedDict(block_id -> block)

    def get_num_free_blocks(self):
        return self.free_block_queue.num_free_blocks

    def get_cached_block(self, h):
        d = self.cache.get(h)
        return next(iter(d.values())) if d else None

    def _maybe_evict_cached_block(self, block):
        if block.block_hash is None:
            return False
        d = self.cache[block.block_hash]
        del d[block.block_id]
        if not d:
            del self.cache[block.block_hash]
        block.block_hash = None
        return True

    def get_new_blocks(self, n):
        out = self.free_block_queue.popleft_n(n)
        for b in out:
            self._maybe_evict_cached_block(b)
            b.ref_cnt = 1
        return out

    def touch(self, blocks):
        for b in blocks:
            if b.ref_cnt == 0:
                self.free_block_queue.remove(b)
            b.ref_cnt += 1

    def free_blocks(self, ordered_blocks):
        front, back = [], []
        for b in ordered_blocks:
            b.ref_cnt -= 1
            if b.ref_cnt == 0:
                (back if b.block_hash is not None else front).append(b)
        self.free_block_queue.prepend_n(front)
        self.free_block_queue.append_n(back)


class KVCacheManager:
    def __init__(self, num_blocks, block_size, enable_caching=True):
        self.block_size = block_size
        self.block_pool = BlockPool(num_blocks)
        self.req_to_blocks = {}
        self.cached = {}

    def _hashes(self, tokens):
        out, parent, bs = [], None, self.block_size
        for i in range(len(tokens) // bs):
            parent = hash_block_tokens(parent, tokens[i * bs:(i + 1) * bs])
            out.append(parent)
        return out

    def get_computed_blocks(self, request):
        limit = (request.num_tokens - 1) // self.block_size
        found = []
        for h in self._hashes(request.all_token_ids)[:limit]:
            b = self.block_pool.get_cached_block(h)
            if b is None:
                break
            found.append(b)
        return found, len(found) * self.block_size

    def allocate_slots(self, request, num_new_tokens, num_new_computed_tokens=0, new_computed_blocks=()):
        bs = self.block_size
        table = self.req_to_blocks.get(request.request_id, [])
        total = request.num_computed_tokens + num_new_computed_tokens + num_new_tokens
        need = max(0, -(-total // bs) - len(table) - len(new_computed_blocks))
        if need + sum(b.ref_cnt == 0 for b in new_computed_blocks) > self.block_pool.get_num_free_blocks():
            return None
        self.block_pool.touch(new_computed_blocks)
        table = self.req_to_blocks.setdefault(request.request_id, [])
        table.extend(new_computed_blocks)
        if new_computed_blocks:
            self.cached[request.request_id] = len(table)
        new = self.block_pool.get_new_blocks(need)
        table.extend(new)
        full = min(total, request.num_tokens) // bs
        hashes = self._hashes(request.all_token_ids)
        for i in range(self.cached.get(request.request_id, 0), full):
            table[i].block_hash = hashes[i]
            self.block_pool.cache.setdefault(hashes[i], {})[table[i].block_id] = table[i]
        self.cached[request.request_id] = max(full, self.cached.get(request.request_id, 0))
        return new

    def free(self, request):
        table = self.req_to_blocks.pop(request.request_id, [])
        self.cached.pop(request.request_id, None)
        self.block_pool.free_blocks(table[::-1])
