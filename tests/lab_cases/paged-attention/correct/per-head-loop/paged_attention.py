"""Correct variant: plain loops over sequences and heads, the block walk spelled out."""
import math

import torch


def paged_attention_decode(query, key_cache, value_cache, block_table, seq_lens, scale):
    num_seqs, num_heads, d = query.shape
    bs, kvh = key_cache.shape[1], key_cache.shape[2]
    per_kv = num_heads // kvh
    out = torch.zeros_like(query)
    for s in range(num_seqs):
        n = int(seq_lens[s])
        rows_k, rows_v = [], []
        for j in range(math.ceil(n / bs)):
            block = int(block_table[s][j])
            take = bs if (j + 1) * bs <= n else n - j * bs
            rows_k.append(key_cache[block][:take])
            rows_v.append(value_cache[block][:take])
        k, v = torch.cat(rows_k).float(), torch.cat(rows_v).float()
        for h in range(num_heads):
            kv = h // per_kv
            w = torch.softmax((k[:, kv, :] @ query[s, h].float()) * scale, dim=0)
            out[s, h] = (w @ v[:, kv, :]).to(query.dtype)
    return out
