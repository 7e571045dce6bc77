"""PagedAttention: write each new token's K/V into its cache slot, then attend through block tables.

The cache of one layer is `kv_cache` of shape [num_blocks, block_size, 2, kv_heads, head_dim]
(a token's K and V side by side, so one copy fetches both). Token `p` of a sequence lives in
block `block_table[p // block_size]` at offset `p % block_size`; `slot_mapping` gives each new
token's flat slot (block * block_size + offset).

A step's flat token list is ordered "decode tokens first, then prompt tokens", and attention
runs once per group:

- decodes: one query per sequence. A kernel walks each sequence's block table in place: Triton
  on a GPU (triton_attention.py), C++ on the CPU (cpu_kernels.py). Without one, we gather the
  blocks into a padded [seqs, blocks * block_size] tensor with one `index_select` and call
  PyTorch's `scaled_dot_product_attention` with a mask hiding the padding.
- prompts (or prompt chunks): several queries per sequence, padded into [seqs, max_q]; the mask
  is causal, offset by the tokens already in the cache (a prefix-cache hit or an earlier chunk).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AttnGroup:
    """Sequences that attend the same way this step, with their block tables padded to one width."""

    block_tables: torch.Tensor            # [S, max_blocks] int32/int64, padded with the spare block
    context_lens: torch.Tensor            # [S] tokens each sequence attends to (cached + new)
    mask: torch.Tensor | None             # [S, 1, max_q, max_blocks * block_size] bool, True = attend
    max_q: int = 1                        # queries per sequence after padding
    q_index: torch.Tensor | None = None   # rows of the group's tokens -> padded [S * max_q] layout
    out_index: torch.Tensor | None = None  # padded rows that are real tokens, in token order
    causal: bool = False                  # whole prompts from position 0: SDPA's is_causal, no mask


@dataclass
class StepContext:
    """What attention needs for one step besides the tokens themselves (built by model_runner)."""

    slot_mapping: torch.Tensor            # [T] flat cache slot for each new token's K/V
    num_decode_tokens: int                # the first rows are single-token decodes
    decode: AttnGroup | None = None
    prefill: AttnGroup | None = None
    decode_kernel: object = None          # Triton decode (GPU) or None for the PyTorch path


def store_kv(kv_cache: torch.Tensor, kv: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """Scatter the new tokens' K and V ([T, 2, kv_heads, head_dim], as a slot holds them) into their slots."""
    kv_cache.view(-1, *kv.shape[1:]).index_copy_(0, slot_mapping, kv)


def gather_attention(q: torch.Tensor, kv_cache: torch.Tensor, group: AttnGroup) -> torch.Tensor:
    """Attention for one group: gather its blocks into a padded batch, then SDPA with the mask.

    q: [tokens of the group, heads, head_dim] -> [tokens, heads * head_dim].
    """
    num_seqs, max_blocks = group.block_tables.shape
    num_blocks, block_size, _, kv_heads, head_dim = kv_cache.shape
    if group.q_index is not None:
        q = q[group.q_index]
    if group.max_q == 1:
        # Decode: the query heads sharing a KV head become that head's queries (grouped-query
        # attention as [seqs, kv_heads, heads per KV head, head_dim]): 3x fewer, larger pieces of work.
        q = q.view(num_seqs, kv_heads, -1, head_dim)
    else:
        q = q.view(num_seqs, group.max_q, -1, head_dim).transpose(1, 2)
    # One 2-D index_select copies whole blocks, K and V together (fast); a 5-D one goes element by element.
    kv = kv_cache.view(num_blocks, -1).index_select(0, group.block_tables.reshape(-1))
    # A causal prompt from position 0 needs no key past its last query; with as many keys as queries
    # SDPA can use flash attention (padded to whole blocks, it fell back to its math kernel on a GPU).
    kv = kv.view(num_seqs, max_blocks * block_size, 2, kv_heads, head_dim)[:, :group.max_q if group.causal else None]
    k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)  # [seqs, kv_heads, slots, head_dim]
    mask = group.mask
    if mask is None and not group.causal:  # decode rows attend to their first context_len slots
        slots = torch.arange(max_blocks * block_size, device=q.device)
        mask = (slots < group.context_lens[:, None]).view(num_seqs, 1, 1, -1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=group.causal,
                                         enable_gqa=q.shape[1] != kv_heads)
    out = (out if group.max_q == 1 else out.transpose(1, 2)).reshape(num_seqs * group.max_q, -1)
    return out if group.out_index is None else out[group.out_index]


def paged_attention(q: torch.Tensor, kv_cache: torch.Tensor, ctx: StepContext) -> torch.Tensor:
    """q: [T, heads, head_dim] for the step's flat tokens -> attention output [T, heads * head_dim]."""
    n = ctx.num_decode_tokens
    outs = []
    if ctx.decode is not None:
        if ctx.decode_kernel is not None:
            outs.append(ctx.decode_kernel(q[:n], kv_cache, ctx.decode).flatten(1))
        else:
            outs.append(gather_attention(q[:n], kv_cache, ctx.decode))
    if ctx.prefill is not None:
        outs.append(gather_attention(q[n:], kv_cache, ctx.prefill))
    return outs[0] if len(outs) == 1 else torch.cat(outs)


def build_group(block_tables: list[list[int]], q_starts: list[int], q_lens: list[int],
                block_size: int, pad_block: int, device, decode: bool) -> AttnGroup:
    """Tensors for one group from plain lists (called once per step, shared by every layer)."""
    max_blocks = max(len(t) for t in block_tables)
    tables = torch.tensor([t + [pad_block] * (max_blocks - len(t)) for t in block_tables], dtype=torch.int64)
    context_lens = torch.tensor([s + n for s, n in zip(q_starts, q_lens)], dtype=torch.int64)
    to = lambda t: t.to(device, non_blocking=True)  # noqa: E731
    if decode:  # one query per sequence: it attends to the first context_len slots (the kernels,
        # and gather_attention, read that from context_lens on the device: no mask to copy)
        return AttnGroup(to(tables), to(context_lens), None)
    max_q = max(q_lens)
    key_pos = torch.arange(max_blocks * block_size)
    if not any(q_starts):
        # Whole prompts (no cached prefix, no earlier chunk): query i sits at position i, so SDPA's
        # is_causal (query i sees keys 0..i: PyTorch aligns it top-left) is the mask, and the
        # kernels skip the blocks above the diagonal (on a GPU: flash attention instead of a
        # materialised mask). Right padding is harmless: a real query never reaches past its own
        # position.
        if all(n == max_q for n in q_lens):  # nothing to pad: the flat rows already are [S, max_q]
            return AttnGroup(to(tables), to(context_lens), None, max_q, causal=True)
        causal = True
    else:
        causal = False
    starts = torch.tensor(q_starts, dtype=torch.int64)
    lens = torch.tensor(q_lens, dtype=torch.int64)
    i = torch.arange(max_q)
    valid = i[None, :] < lens[:, None]                                 # [S, max_q] real queries
    q_pos = starts[:, None] + i[None, :]                               # each query's position
    mask = (key_pos[None, None, :] <= q_pos[:, :, None]).unsqueeze(1)  # causal, past the cached prefix
    first_row = torch.cumsum(lens, 0) - lens                            # group row of each seq's 1st query
    q_index = torch.where(valid, first_row[:, None] + i[None, :], 0).reshape(-1)
    out_index = valid.reshape(-1).nonzero().squeeze(1)
    return AttnGroup(to(tables), to(context_lens), None if causal else to(mask), max_q, to(q_index), to(out_index),
                     causal)


def decode_kernel_error(kernel, kv_cache: torch.Tensor, num_heads: int) -> float:
    """Largest difference between a decode kernel and `gather_attention` on random blocks shaped
    like `kv_cache` (three sequences: several blocks, one token, whole blocks). The Triton and C++
    kernels are checked with it at start-up, before the engine trusts them."""
    _, block_size, _, kv_heads, head_dim = kv_cache.shape
    dev, dtype, gen = kv_cache.device, kv_cache.dtype, torch.Generator(device="cpu").manual_seed(0)
    cache = torch.randn(12, block_size, 2, kv_heads, head_dim, generator=gen).to(dev, dtype)
    tables, lens = [[3, 7, 1], [5], [0, 2, 4, 6, 8]], [2 * block_size + 3, 1, 5 * block_size]
    group = build_group(tables, [n - 1 for n in lens], [1] * 3, block_size, 11, dev, decode=True)
    q = torch.randn(3, num_heads, head_dim, generator=gen).to(dev, dtype)
    got = kernel(q, cache, group).flatten(1).float()
    return (got - gather_attention(q, cache, group).float()).abs().max().item()
