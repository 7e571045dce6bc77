"""Correct variant: one block at a time with an online softmax (running max and sum), as the
decode kernels do it; never holds more than one block of K/V."""
import torch


def paged_attention_decode(query, key_cache, value_cache, block_table, seq_lens, scale):
    num_seqs, num_heads, d = query.shape
    bs, kvh = key_cache.shape[1], key_cache.shape[2]
    g = num_heads // kvh
    out = torch.empty_like(query)
    for i in range(num_seqs):
        n = int(seq_lens[i])
        q = query[i].float().view(kvh, g, d)
        m = torch.full((kvh, g), float("-inf"))
        s = torch.zeros(kvh, g)
        acc = torch.zeros(kvh, g, d)
        for j in range((n + bs - 1) // bs):
            b = int(block_table[i, j])
            used = min(bs, n - j * bs)
            k = key_cache[b, :used].float()          # [used, kvh, d]
            v = value_cache[b, :used].float()
            x = torch.einsum("hgd,thd->hgt", q, k) * scale
            m_new = torch.maximum(m, x.max(-1).values)
            corr = torch.exp(m - m_new)
            p = torch.exp(x - m_new[..., None])
            s = s * corr + p.sum(-1)
            acc = acc * corr[..., None] + torch.einsum("hgt,thd->hgd", p, v)
            m = m_new
        out[i] = (acc / s[..., None]).reshape(num_heads, d).to(query.dtype)
    return out
