"""Correct variant: every sequence's table gathered at once (padded to the longest), then masked."""
import torch


def paged_attention_decode(query, key_cache, value_cache, block_table, seq_lens, scale):
    num_seqs, num_heads, d = query.shape
    bs, kvh = key_cache.shape[1], key_cache.shape[2]
    nb = (int(seq_lens.max()) + bs - 1) // bs
    table = block_table[:, :nb].long()
    k = key_cache[table].reshape(num_seqs, nb * bs, kvh, d).float()   # only the tables' blocks
    v = value_cache[table].reshape(num_seqs, nb * bs, kvh, d).float()
    k = k.repeat_interleave(num_heads // kvh, dim=2)                   # [seqs, slots, heads, d]
    v = v.repeat_interleave(num_heads // kvh, dim=2)
    scores = torch.einsum("shd,sthd->sht", query.float(), k) * scale
    pos = torch.arange(nb * bs)
    scores = scores.masked_fill(pos[None, None, :] >= seq_lens.long()[:, None, None], float("-inf"))
    return torch.einsum("sht,sthd->shd", scores.softmax(-1), v).to(query.dtype)
