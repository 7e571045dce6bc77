"""Your PagedAttention: decode attention of one layer over a paged K/V pool. README.md explains it.
Check it with `z2v check paged-attention`.

Shapes (vLLM's layout, v1/attention/backends/triton_attn.py):
    query        [num_seqs, num_heads, head_size]
    key_cache    [num_blocks, block_size, num_kv_heads, head_size]   (value_cache alike)
    block_table  [num_seqs, max_blocks_per_seq] int, padded past each sequence's blocks
    seq_lens     [num_seqs] int: sequence i attends to its tokens 0 .. seq_lens[i] - 1
    returns      [num_seqs, num_heads, head_size], in query's dtype

Rules: read K/V through block_table (the blocks are anywhere in the pool, in any order); never
build a dense copy of the whole pool; query head h uses K/V head h // (num_heads // num_kv_heads).
"""

import torch


def paged_attention_decode(query, key_cache, value_cache, block_table, seq_lens, scale):
    # TODO: for each sequence, its K/V through its blocks; scores = q . k * scale; softmax; sum of v
    raise NotImplementedError("TODO: paged_attention_decode")
