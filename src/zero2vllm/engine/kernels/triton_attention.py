"""PagedAttention's decode kernel in Triton (GPU): each program walks one sequence's block table.

One program per (sequence, KV head). It loads the queries of the heads that share that KV head
(grouped-query attention), then walks the sequence a tile of TILE tokens at a time: it looks up
each token's block in the table, loads the tile's K and V straight from the pool, and keeps a
running softmax (max `m`, sum `l`, weighted values `acc`: the online softmax of FlashAttention).
Scores and the weighted sum are `tl.dot`s, so they run on the tensor cores. Nothing is gathered
or padded, and the loop bound comes from the sequence's own length, so the same compiled kernel
serves every batch and can be recorded in a CUDA graph.

A tile spans several 16-token blocks: the first version loaded one block per iteration, and
each program then waited on one small load after another (docs/benchmarks.md, decode attention).

Small batches split each sequence's context across SPLITS programs (flash-decoding): batch 1 is 8
programs otherwise, on a GPU of 132 SMs. Each writes its part's output and log-sum-exp, and a
second kernel weighs the parts together. The split count is fixed per batch size, so a CUDA
graph holds it; each part's range comes from the sequence's length at run time.

`load_decode_kernel` compiles it, checks it against the PyTorch path on random data, and
returns None (the caller falls back to PyTorch) if Triton is missing or the check fails.
"""

from __future__ import annotations

import sys

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the engine uses the PyTorch path
    triton = None

TILE = 64  # tokens per iteration of a program
PROGRAMS = 256  # split contexts until a step has about this many programs (2 per SM)

if triton is not None:

    @triton.jit
    def _decode_kernel(out_ptr, lse_ptr, q_ptr, k_cache_ptr, v_cache_ptr, block_tables_ptr, context_lens_ptr, scale,
                       stride_bt, stride_qt, stride_qh, stride_os, stride_ot, stride_oh, stride_kb, stride_ks,
                       stride_kh, GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr,
                       BLOCK_SIZE: tl.constexpr, TILE: tl.constexpr, SPLITS: tl.constexpr, IEEE: tl.constexpr):
        seq, kv_head, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        context_len = tl.load(context_lens_ptr + seq)
        per_split = tl.cdiv(tl.cdiv(context_len, SPLITS), TILE) * TILE  # whole tiles; late parts may be empty
        lo = split * per_split
        hi = tl.minimum(lo + per_split, context_len)
        g = tl.arange(0, GROUP_PAD)
        heads = kv_head * GROUP + g
        head_ok = g < GROUP
        d = tl.arange(0, HEAD_DIM)
        q = tl.load(q_ptr + seq * stride_qt + heads[:, None] * stride_qh + d[None, :],
                    mask=head_ok[:, None], other=0.0)                                   # [G, D]
        m = tl.full([GROUP_PAD], float("-inf"), tl.float32)
        l = tl.zeros([GROUP_PAD], tl.float32)
        acc = tl.zeros([GROUP_PAD, HEAD_DIM], tl.float32)
        t = tl.arange(0, TILE)
        for start in range(lo, hi, TILE):
            pos = start + t
            valid = pos < hi
            block = tl.load(block_tables_ptr + seq * stride_bt + pos // BLOCK_SIZE, mask=valid, other=0)
            offs = (block[:, None] * stride_kb + (pos % BLOCK_SIZE)[:, None] * stride_ks
                    + kv_head * stride_kh + d[None, :])
            k = tl.load(k_cache_ptr + offs, mask=valid[:, None], other=0.0)            # [T, D]
            v = tl.load(v_cache_ptr + offs, mask=valid[:, None], other=0.0)
            if IEEE:  # fp32 models: exact products, as the PyTorch path computes them
                s = tl.dot(q, tl.trans(k), input_precision="ieee")
            else:
                s = tl.dot(q, tl.trans(k))
            s = tl.where(valid[None, :], s * scale, float("-inf"))                     # [G, T]
            m_new = tl.maximum(m, tl.max(s, axis=1))
            alpha = tl.exp(m - m_new)
            p = tl.exp(s - m_new[:, None])
            l = l * alpha + tl.sum(p, axis=1)
            if IEEE:
                pv = tl.dot(p, v, input_precision="ieee")
            else:
                pv = tl.dot(p.to(v.dtype), v)
            acc = acc * alpha[:, None] + pv
            m = m_new
        out = acc / tl.maximum(l, 1e-30)[:, None]  # an empty range: zeros, not NaN
        tl.store(out_ptr + split * stride_os + seq * stride_ot + heads[:, None] * stride_oh + d[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=head_ok[:, None])
        if SPLITS > 1:  # the part's log-sum-exp, -inf when empty, for _combine_kernel
            tl.store(lse_ptr + (split * tl.num_programs(0) + seq) * GROUP * tl.num_programs(1) + heads,
                     m + tl.log(l), mask=head_ok)

    @triton.jit
    def _combine_kernel(out_ptr, part_ptr, lse_ptr, stride_ot, stride_oh, SPLITS: tl.constexpr,
                        HEAD_DIM: tl.constexpr):
        seq, head = tl.program_id(0), tl.program_id(1)
        rows = (tl.arange(0, SPLITS) * tl.num_programs(0) + seq) * tl.num_programs(1) + head  # [S]
        lse = tl.load(lse_ptr + rows)
        top = tl.max(lse, axis=0)
        w = tl.exp(lse - tl.where(top == float("-inf"), 0.0, top))  # each part's share of the softmax
        d = tl.arange(0, HEAD_DIM)
        parts = tl.load(part_ptr + rows[:, None] * HEAD_DIM + d[None, :]).to(tl.float32)
        out = tl.sum(w[:, None] * parts, axis=0) / tl.maximum(tl.sum(w, axis=0), 1e-30)
        tl.store(out_ptr + seq * stride_ot + head * stride_oh + d, out.to(out_ptr.dtype.element_ty))


def paged_decode(q: torch.Tensor, kv_cache: torch.Tensor, group) -> torch.Tensor:
    """q: [B, heads, head_dim]; kv_cache: [blocks, block_size, 2, kv_heads, head_dim] -> [B, heads, head_dim]."""
    batch, num_heads, head_dim = q.shape
    k_cache, v_cache = kv_cache[:, :, 0], kv_cache[:, :, 1]  # views: same strides, V one head-row later
    _, block_size, kv_heads, _ = k_cache.shape
    group_size = num_heads // kv_heads
    splits = min(16, triton.next_power_of_2(-(-PROGRAMS // (batch * kv_heads))))
    out = torch.empty_like(q)
    # with splits, each part's output in fp32 ([splits, batch, heads, head_dim]) and its log-sum-exp
    part = out if splits == 1 else torch.empty(splits, *q.shape, dtype=torch.float32, device=q.device)
    lse = out if splits == 1 else torch.empty(splits, batch, num_heads, dtype=torch.float32, device=q.device)
    tables = group.block_tables
    _decode_kernel[(batch, kv_heads, splits)](
        part, lse, q, k_cache, v_cache, tables, group.context_lens, head_dim ** -0.5,
        tables.stride(0), q.stride(0), q.stride(1), 0 if splits == 1 else part.stride(0), part.stride(-3),
        part.stride(-2), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        GROUP=group_size, GROUP_PAD=max(16, triton.next_power_of_2(group_size)),  # tl.dot needs 16 rows
        HEAD_DIM=head_dim, BLOCK_SIZE=block_size, TILE=TILE, SPLITS=splits, IEEE=q.dtype == torch.float32)
    if splits > 1:
        _combine_kernel[(batch, num_heads)](out, part, lse, out.stride(0), out.stride(1), SPLITS=splits,
                                            HEAD_DIM=head_dim)
    return out


def load_decode_kernel(kv_cache: torch.Tensor, num_heads: int):
    """The Triton decode kernel if it compiles and agrees with the PyTorch path here, else None."""
    if triton is None:
        print("engine: triton not installed; decode attention uses the PyTorch gather path", file=sys.stderr)
        return None
    from ..attention import decode_kernel_error

    try:
        err = decode_kernel_error(paged_decode, kv_cache, num_heads)
        if not err < 2e-2:
            raise ValueError(f"differs from the PyTorch path by {err:.3g}")
    except Exception as exc:  # a broken kernel must not take the server down: fall back
        print(f"engine: Triton decode kernel unusable ({exc}); using the PyTorch gather path", file=sys.stderr)
        return None
    return paged_decode
