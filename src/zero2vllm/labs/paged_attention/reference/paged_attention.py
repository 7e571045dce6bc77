"""Decode attention of one layer over a paged K/V pool, as vLLM's attention backends read it.

The pool holds every sequence's K/V in fixed-size blocks anywhere in memory; block_table[i]
lists sequence i's physical blocks in order, so its token t lives in block
block_table[i][t // block_size] at offset t % block_size. One decode step: each sequence has
one new query (its K/V already written to the pool) and attends to its first seq_lens[i] tokens.

Grouped-query attention: num_heads query heads share num_kv_heads K/V heads; query head h reads
K/V head h // (num_heads // num_kv_heads).

Shapes (vLLM's layout, v1/attention/backends/triton_attn.py):
    query        [num_seqs, num_heads, head_size]
    key_cache    [num_blocks, block_size, num_kv_heads, head_size]   (value_cache alike)
    block_table  [num_seqs, max_blocks_per_seq] int, padded past each sequence's blocks
    seq_lens     [num_seqs] int
    returns      [num_seqs, num_heads, head_size]
"""

import torch


def paged_attention_decode(query, key_cache, value_cache, block_table, seq_lens, scale):
    num_seqs, num_heads, head_size = query.shape
    block_size, num_kv_heads = key_cache.shape[1], key_cache.shape[2]
    group = num_heads // num_kv_heads
    out = torch.empty_like(query)
    for i in range(num_seqs):
        n = int(seq_lens[i])
        blocks = block_table[i, : (n + block_size - 1) // block_size]  # this sequence's blocks only
        k = key_cache[blocks].reshape(-1, num_kv_heads, head_size)[:n]   # [n, kv_heads, d]
        v = value_cache[blocks].reshape(-1, num_kv_heads, head_size)[:n]
        q = query[i].view(num_kv_heads, group, head_size).float()        # heads grouped by kv head
        scores = torch.einsum("kgd,nkd->kgn", q, k.float()) * scale
        probs = scores.softmax(dim=-1)
        out[i] = torch.einsum("kgn,nkd->kgd", probs, v.float()).reshape(num_heads, head_size).to(query.dtype)
    return out
