"""Correct variant: per sequence, slot indices computed from the table, K/V heads repeated, SDPA."""
import torch
import torch.nn.functional as F


def paged_attention_decode(query, key_cache, value_cache, block_table, seq_lens, scale):
    num_seqs, num_heads, d = query.shape
    nblk, bs, kvh, _ = key_cache.shape
    flat_k = key_cache.view(nblk * bs, kvh, d)   # a view: no copy
    flat_v = value_cache.view(nblk * bs, kvh, d)
    outs = []
    for i in range(num_seqs):
        n = int(seq_lens[i])
        t = torch.arange(n)
        slots = block_table[i].long()[t // bs] * bs + t % bs
        k = flat_k[slots].float().transpose(0, 1).repeat_interleave(num_heads // kvh, 0)  # [heads, n, d]
        v = flat_v[slots].float().transpose(0, 1).repeat_interleave(num_heads // kvh, 0)
        q = query[i].float()[:, None, :]                                                   # [heads, 1, d]
        outs.append(F.scaled_dot_product_attention(q, k, v, scale=scale)[:, 0])
    return torch.stack(outs).to(query.dtype)
