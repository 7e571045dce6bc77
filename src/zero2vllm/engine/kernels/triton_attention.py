"""PagedAttention's decode kernel in Triton (GPU): each program walks one sequence's block table.

One program per (sequence, KV head). It loads the queries of the heads that share that KV head
(grouped-query attention), then, block by block of the sequence's table, loads that block's K
and V straight from the pool, and keeps a running softmax (max `m`, sum `l`, weighted values
`acc`: the online softmax of FlashAttention). Nothing is gathered or padded, and the loop bound
comes from the sequence's own length, so the same compiled kernel serves every batch and can be
recorded in a CUDA graph.

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

if triton is not None:

    @triton.jit
    def _decode_kernel(out_ptr, q_ptr, k_cache_ptr, v_cache_ptr, block_tables_ptr, context_lens_ptr, scale,
                       stride_bt, stride_qt, stride_qh, stride_ot, stride_oh, stride_kb, stride_ks, stride_kh,
                       GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr,
                       BLOCK_SIZE: tl.constexpr):
        seq = tl.program_id(0)
        kv_head = tl.program_id(1)
        context_len = tl.load(context_lens_ptr + seq)
        g = tl.arange(0, GROUP_PAD)
        heads = kv_head * GROUP + g
        head_ok = g < GROUP
        d = tl.arange(0, HEAD_DIM)
        q = tl.load(q_ptr + seq * stride_qt + heads[:, None] * stride_qh + d[None, :],
                    mask=head_ok[:, None], other=0.0).to(tl.float32)                  # [G, D]
        m = tl.full([GROUP_PAD], float("-inf"), tl.float32)
        l = tl.zeros([GROUP_PAD], tl.float32)
        acc = tl.zeros([GROUP_PAD, HEAD_DIM], tl.float32)
        slots = tl.arange(0, BLOCK_SIZE)
        for i in range(0, tl.cdiv(context_len, BLOCK_SIZE)):
            block = tl.load(block_tables_ptr + seq * stride_bt + i)
            offs = block * stride_kb + slots[:, None] * stride_ks + kv_head * stride_kh + d[None, :]
            k = tl.load(k_cache_ptr + offs).to(tl.float32)                             # [BS, D]
            v = tl.load(v_cache_ptr + offs).to(tl.float32)
            s = tl.sum(q[:, None, :] * k[None, :, :], axis=2) * scale                  # [G, BS]
            s = tl.where((i * BLOCK_SIZE + slots < context_len)[None, :], s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, axis=1))
            alpha = tl.exp(m - m_new)
            p = tl.exp(s - m_new[:, None])
            l = l * alpha + tl.sum(p, axis=1)
            acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v[None, :, :], axis=1)
            m = m_new
        out = acc / tl.maximum(l, 1e-30)[:, None]  # context_len 0: zeros, not NaN
        tl.store(out_ptr + seq * stride_ot + heads[:, None] * stride_oh + d[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=head_ok[:, None])


def paged_decode(q: torch.Tensor, kv_cache: torch.Tensor, group) -> torch.Tensor:
    """q: [B, heads, head_dim]; kv_cache: [blocks, block_size, 2, kv_heads, head_dim] -> [B, heads, head_dim]."""
    batch, num_heads, head_dim = q.shape
    k_cache, v_cache = kv_cache[:, :, 0], kv_cache[:, :, 1]  # views: same strides, V one head-row later
    _, block_size, kv_heads, _ = k_cache.shape
    group_size = num_heads // kv_heads
    out = torch.empty_like(q)
    tables = group.block_tables
    _decode_kernel[(batch, kv_heads)](
        out, q, k_cache, v_cache, tables, group.context_lens, head_dim ** -0.5,
        tables.stride(0), q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        GROUP=group_size, GROUP_PAD=triton.next_power_of_2(group_size), HEAD_DIM=head_dim, BLOCK_SIZE=block_size)
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
