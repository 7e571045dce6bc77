"""The paged-attention lab's criteria, run on the learner's paged_attention.py.

Each case builds a pool much larger than the sequences need, scatters every sequence's tokens
into shuffled, non-contiguous blocks, and compares the learner's output with dense attention over
the same K/V kept aside in order (the check's own, independent of the pool).
"""

from __future__ import annotations

import math

from zero2vllm.labs.framework import CheckFailed, criterion

LENGTHS = [1, 15, 16, 17, 127, 129]


def setup(ctx) -> None:
    import torch

    torch.set_num_threads(1)


def make_case(seed, lengths=LENGTHS, num_heads=8, num_kv_heads=2, head_size=32, block_size=16,
              dtype=None, spare_blocks=200):
    import torch

    dtype = dtype or torch.float32
    g = torch.Generator().manual_seed(seed)
    need = [math.ceil(n / block_size) for n in lengths]
    num_blocks = sum(need) + spare_blocks                       # most of the pool belongs to nobody
    ids = torch.randperm(num_blocks, generator=g)[: sum(need)].tolist()  # shuffled, non-contiguous
    key_cache = torch.randn(num_blocks, block_size, num_kv_heads, head_size, generator=g).to(dtype)
    value_cache = torch.randn(num_blocks, block_size, num_kv_heads, head_size, generator=g).to(dtype)
    max_blocks = max(need) + 2
    block_table = torch.zeros(len(lengths), max_blocks, dtype=torch.int32)
    dense_k, dense_v = [], []
    at = 0
    for i, (n, nb) in enumerate(zip(lengths, need)):
        mine = ids[at:at + nb]
        at += nb
        block_table[i, :nb] = torch.tensor(mine, dtype=torch.int32)
        # pad with a real block of someone else: reading past the table's end must show
        block_table[i, nb:] = ids[(at) % len(ids)]
        dense_k.append(torch.cat([key_cache[b] for b in mine])[:n])
        dense_v.append(torch.cat([value_cache[b] for b in mine])[:n])
    query = torch.randn(len(lengths), num_heads, head_size, generator=g).to(dtype)
    seq_lens = torch.tensor(lengths, dtype=torch.int32)
    return dict(query=query, key_cache=key_cache, value_cache=value_cache, block_table=block_table,
                seq_lens=seq_lens, scale=head_size ** -0.5), dense_k, dense_v


def dense(case, dense_k, dense_v, head_map=None, lens=None):
    """Attention over the K/V kept in order (fp32), for query head h on kv head head_map(h)."""
    import torch

    q = case["query"].float()
    num_heads, num_kv = q.shape[1], case["key_cache"].shape[2]
    group = num_heads // num_kv
    head_map = head_map or (lambda h: h // group)
    out = torch.empty_like(q)
    for i, (k, v) in enumerate(zip(dense_k, dense_v)):
        n = lens[i] if lens else k.shape[0]
        k, v = k.float()[:n], v.float()[:n]
        for h in range(num_heads):
            kv = head_map(h)
            p = (k[:, kv] @ q[i, h] * case["scale"]).softmax(0)
            out[i, h] = p @ v[:, kv]
    return out


def through_table(case, lens):
    """K/V of the first lens[i] slots of each table (may run past a sequence): to name an off-by-one."""
    import torch

    bs = case["key_cache"].shape[1]
    ks, vs = [], []
    for i, n in enumerate(lens):
        blocks = case["block_table"][i, : math.ceil(n / bs)].long()
        ks.append(torch.cat([case["key_cache"][b] for b in blocks])[:n])
        vs.append(torch.cat([case["value_cache"][b] for b in blocks])[:n])
    return ks, vs


def call(ctx, case):
    fn = getattr(ctx.module, "paged_attention_decode", None)
    if fn is None:
        raise CheckFailed("paged_attention.py has no paged_attention_decode",
                          hint="keep the scaffold's function name and arguments")
    out = fn(**case)
    shape = tuple(case["query"].shape)
    if not hasattr(out, "shape") or tuple(out.shape) != shape:
        raise CheckFailed("the output has the wrong shape", expected=str(shape),
                          got=str(tuple(getattr(out, "shape", ()))))
    return out


def worst(out, want):
    return float((out.float() - want).abs().max())


@criterion("equal to dense attention (fp32)")
def fp32(ctx):
    case, dk, dv = make_case(0)
    out = call(ctx, case)
    err = worst(out, dense(case, dk, dv))
    ctx.metrics["fp32_max_abs_err"] = err
    if err <= 1e-5:
        return f"lengths {LENGTHS}, shuffled blocks, 8 query heads on 2 KV heads: max |error| {err:.1e}"
    # name the mistake when one explains the difference
    group = 4
    if worst(out, dense(case, dk, dv, head_map=lambda h: h % 2)) < 1e-4:
        raise CheckFailed("wrong GQA head mapping: query head h read K/V head h % num_kv_heads",
                          hint="query head h uses K/V head h // (num_heads // num_kv_heads)")
    if any(worst(out, dense(case, *through_table(case, [max(n + d, 1) for n in LENGTHS]))) < 1e-4 for d in (1, -1)):
        raise CheckFailed("off by one on the sequence length: the partial last block is read one token "
                          "too far or too short", hint="attend to tokens 0 .. seq_lens[i] - 1 exactly")
    per_len = [worst(out[i:i + 1], dense(case, dk, dv)[i:i + 1]) for i in range(len(LENGTHS))]
    bad = [n for n, e in zip(LENGTHS, per_len) if e > 1e-5]
    raise CheckFailed(f"differs from dense attention (max |error| {err:.2e}) for lengths {bad}",
                      expected="max |error| <= 1e-5 in fp32",
                      hint="read block_table[i][t // block_size] at offset t % block_size; scale the "
                           "scores; mask nothing inside the length and everything past it; group = "
                           f"{group} query heads per K/V head")


@criterion("equal to dense attention (bf16)")
def bf16(ctx):
    import torch

    case, dk, dv = make_case(1, dtype=torch.bfloat16)
    out = call(ctx, case)
    if out.dtype != torch.bfloat16:
        raise CheckFailed("the output is not in the query's dtype", expected="torch.bfloat16", got=str(out.dtype))
    err = worst(out, dense(case, dk, dv))
    ctx.metrics["bf16_max_abs_err"] = err
    if err > 3e-2:
        raise CheckFailed(f"differs from dense attention in bf16 (max |error| {err:.2e})", expected="<= 3e-2",
                          hint="accumulate the softmax and the weighted sum in fp32, then cast")
    return f"max |error| {err:.1e} (bf16 rounding)"


@criterion("one sequence at a time, any length")
def lengths(ctx):
    for n in (1, 2, 15, 16, 17, 31, 32, 33, 127, 128, 129):
        for heads, kv in ((4, 4), (6, 2), (8, 1)):
            case, dk, dv = make_case(n * 10 + kv, lengths=[n], num_heads=heads, num_kv_heads=kv, head_size=16,
                                     spare_blocks=5)
            err = worst(call(ctx, case), dense(case, dk, dv))
            if err > 1e-5:
                raise CheckFailed(f"wrong for one sequence of {n} tokens, {heads} query heads on {kv} K/V heads "
                                  f"(max |error| {err:.2e})",
                                  hint="a partial last block holds seq_len % block_size tokens; the rest of it "
                                       "(and of the table) is someone else's memory")
    return "lengths 1 to 129 around every block edge; MHA, GQA and MQA"


@criterion("never a dense copy of the whole cache")
def no_dense_copy(ctx):
    import torch
    from torch.overrides import TorchFunctionMode

    case, dk, dv = make_case(2, spare_blocks=800)
    # the sequences own ~4% of the pool: even their K/V repeated for every query head stays under half
    limit = case["key_cache"].numel() // 2
    seen = []

    class Watch(TorchFunctionMode):  # sees every torch function and Tensor method the code calls
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in (out if isinstance(out, (tuple, list)) else (out,)):
                if isinstance(t, torch.Tensor) and t.numel() >= limit and t.untyped_storage().data_ptr() not in pools:
                    seen.append((getattr(func, "__name__", str(func)), tuple(t.shape)))
            return out

    pools = {case["key_cache"].untyped_storage().data_ptr(), case["value_cache"].untyped_storage().data_ptr()}
    with Watch():
        out = call(ctx, case)
    if seen:
        func, shape = seen[0]
        raise CheckFailed(f"gathered the whole cache densely: {func} made a {list(shape)} tensor, "
                          f"{'as large as' if math.prod(shape) >= case['key_cache'].numel() else 'a large part of'} "
                          f"the {list(case['key_cache'].shape)} pool",
                          hint="read only each sequence's own blocks (key_cache[block_table[i, :num_blocks]]); "
                               "PagedAttention's point is that the pool is never copied")
    err = worst(out, dense(case, dk, dv))
    if err > 1e-5:
        raise CheckFailed(f"differs from dense attention with a large pool (max |error| {err:.2e})")
    return f"no tensor of {limit:,}+ elements made from a pool of {case['key_cache'].numel():,}"
