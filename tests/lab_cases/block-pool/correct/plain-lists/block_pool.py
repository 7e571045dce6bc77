"""Correct variant: a plain Python list as the free queue, tuples as hashes, one class doing the pool."""


class KVCacheBlock:
    def __init__(self, block_id):
        self.block_id = block_id
        self.ref_cnt = 0
        self.block_hash = None


class FreeKVCacheBlockQueue:
    def __init__(self, blocks):
        self.items = list(blocks)

    num_free_blocks = property(lambda self: len(self.items))

    def popleft(self):
        if not self.items:
            raise ValueError("No free blocks available")
        return self.items.pop(0)

    def popleft_n(self, n):
        taken, self.items = self.items[:n], self.items[n:]
        return taken

    def remove(self, block):
        self.items.remove(block)

    def append(self, block):
        self.items.append(block)

    def append_n(self, blocks):
        self.items.extend(blocks)

    def prepend_n(self, blocks):
        self.items[:0] = list(blocks)

    def get_all_free_blocks(self):
        return list(self.items)


def hash_block_tokens(parent_block_hash, curr_block_token_ids):
    # Python's tuple hash mixes in the parent's hash, so this is a chained hash
    return hash(("block", parent_block_hash, *curr_block_token_ids))


class BlockPool:
    def __init__(self, num_blocks, enable_caching=True):
        self.blocks = [KVCacheBlock(i) for i in range(num_blocks)]
        self.free_block_queue = FreeKVCacheBlockQueue(self.blocks)
        self.cached_block_hash_to_block = {}

    def get_num_free_blocks(self):
        return len(self.free_block_queue.items)

    def get_cached_block(self, block_hash):
        same = self.cached_block_hash_to_block.get(block_hash, [])
        return same[0] if same else None

    def _maybe_evict_cached_block(self, block):
        if block.block_hash is None:
            return False
        same = self.cached_block_hash_to_block[block.block_hash]
        same.remove(block)
        if not same:
            del self.cached_block_hash_to_block[block.block_hash]
        block.block_hash = None
        return True

    def get_new_blocks(self, num_blocks):
        blocks = self.free_block_queue.popleft_n(num_blocks)
        assert len(blocks) == num_blocks
        for block in blocks:
            self._maybe_evict_cached_block(block)
            block.ref_cnt = 1
        return blocks

    def touch(self, blocks):
        for block in blocks:
            if block.ref_cnt == 0:
                self.free_block_queue.remove(block)
            block.ref_cnt += 1

    def free_blocks(self, ordered_blocks):
        ordered_blocks = list(ordered_blocks)
        for block in ordered_blocks:
            block.ref_cnt -= 1
        done = [b for b in ordered_blocks if b.ref_cnt == 0]
        self.free_block_queue.prepend_n([b for b in done if b.block_hash is None])
        self.free_block_queue.append_n([b for b in done if b.block_hash is not None])


class KVCacheManager:
    def __init__(self, num_blocks, block_size, enable_caching=True):
        self.block_size = block_size
        self.block_pool = BlockPool(num_blocks)
        self.req_to_blocks = {}
        self.num_cached_block = {}

    def get_computed_blocks(self, request):
        bs, tokens = self.block_size, request.all_token_ids
        parent, hits = None, []
        for i in range((len(tokens) - 1) // bs):
            parent = hash_block_tokens(parent, tokens[i * bs:(i + 1) * bs])
            block = self.block_pool.get_cached_block(parent)
            if block is None:
                break
            hits.append(block)
        return hits, len(hits) * bs

    def allocate_slots(self, request, num_new_tokens, num_new_computed_tokens=0, new_computed_blocks=()):
        bs = self.block_size
        rid = request.request_id
        old = self.req_to_blocks.get(rid, [])
        upto = request.num_computed_tokens + num_new_computed_tokens + num_new_tokens
        wanted = -(-upto // bs) - len(old) - len(new_computed_blocks)
        wanted = wanted if wanted > 0 else 0
        costs = wanted + sum(1 for b in new_computed_blocks if b.ref_cnt == 0)
        if costs > self.block_pool.get_num_free_blocks():
            return None
        self.block_pool.touch(new_computed_blocks)
        blocks = old + list(new_computed_blocks)
        if new_computed_blocks:
            self.num_cached_block[rid] = len(blocks)
        fresh = self.block_pool.get_new_blocks(wanted)
        blocks += fresh
        self.req_to_blocks[rid] = blocks
        # cache newly full blocks
        tokens, parent = request.all_token_ids, None
        done = self.num_cached_block.get(rid, 0)
        full = min(upto, request.num_tokens) // bs
        for i in range(full):
            parent = hash_block_tokens(parent, tokens[i * bs:(i + 1) * bs])
            if i >= done:
                blocks[i].block_hash = parent
                self.block_pool.cached_block_hash_to_block.setdefault(parent, []).append(blocks[i])
        self.num_cached_block[rid] = max(done, full)
        return fresh

    def free(self, request):
        blocks = self.req_to_blocks.pop(request.request_id, [])
        self.num_cached_block.pop(request.request_id, None)
        self.block_pool.free_blocks(reversed(blocks))
