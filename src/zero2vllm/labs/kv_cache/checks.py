"""The kv-cache lab's criteria, run on the learner's model.py by zero2vllm.labs.runner.

The interface is in the scaffold's docstring: KVCache(config), model(idx, kv_cache=cache),
cache.k / cache.v per layer, generate(..., use_cache=True). Every criterion compares the cached
path with the learner's own uncached path, so it judges the cache, not the rest of the model.
"""

from __future__ import annotations

import os
import statistics
import time

from zero2vllm.labs.framework import CheckFailed, criterion

SMALL = dict(vocab_size=65, block_size=48, n_layer=2, n_head=4, n_embd=32, dropout=0.0)


def setup(ctx) -> None:
    import torch

    # One thread: timings are steadier, and a 2-core CI machine is not oversubscribed.
    torch.set_num_threads(1)


# -- helpers ------------------------------------------------------------------------------------
def build(ctx, seed: int = 0, std: float | None = 0.3, **overrides):
    """The learner's GPT in eval mode; with `std`, large random weights so mistakes show."""
    import torch

    mod = ctx.module
    for name in ("GPTConfig", "GPT", "KVCache"):
        if not hasattr(mod, name):
            raise CheckFailed(f"model.py has no {name}",
                              hint="keep the names of the scaffold: GPTConfig, GPT and KVCache")
    torch.manual_seed(seed)
    cfg = mod.GPTConfig(**{**SMALL, **overrides})
    model = mod.GPT(cfg).eval()
    if std is not None:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model, cfg


def logits_of(out):
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out


def cached_call(model, idx, cache):
    import torch

    with torch.no_grad():
        try:
            return logits_of(model(idx, kv_cache=cache))
        except TypeError as exc:
            if "kv_cache" in str(exc):
                raise CheckFailed("model(idx, kv_cache=cache) is not accepted",
                                  got=str(exc), hint="add a kv_cache=None argument to GPT.forward") from None
            raise


def new_cache(ctx, cfg):
    cache = ctx.module.KVCache(cfg)
    try:
        n = len(cache)
    except NotImplementedError:
        raise CheckFailed("KVCache is not written yet (len(cache) raises NotImplementedError)",
                          hint="fill in the TODOs of KVCache: seq_len and update") from None
    if n != 0:
        raise CheckFailed("a new KVCache is not empty", expected="len(cache) == 0", got=str(n))
    return cache


# -- criteria -----------------------------------------------------------------------------------
@criterion("cache holds the expected tensors")
def cache_tensors(ctx):
    import torch

    from zero2vllm.instruments.kvprofile import formula_bytes

    model, cfg = build(ctx)
    hs = cfg.n_embd // cfg.n_head
    B, T = 2, 7
    idx = torch.randint(0, cfg.vocab_size, (B, T), generator=torch.Generator().manual_seed(1))
    cache = new_cache(ctx, cfg)
    cached_call(model, idx, cache)
    for step, length in (("after a prompt of 7 tokens", T), ("after one more token", T + 1)):
        if step.startswith("after one"):
            cached_call(model, idx[:, :1], cache)
        if len(cache) != length:
            raise CheckFailed(f"len(cache) is wrong {step}", expected=str(length), got=str(len(cache)),
                              hint="each forward call appends its T_new positions to every layer")
        for name in ("k", "v"):
            tensors = getattr(cache, name, None)
            if not isinstance(tensors, (list, tuple)) or len(tensors) != cfg.n_layer:
                raise CheckFailed(f"cache.{name} should hold one tensor per layer",
                                  expected=f"a list of {cfg.n_layer}", got=repr(type(tensors).__name__))
            for layer, t in enumerate(tensors):
                want = (B, cfg.n_head, length, hs)
                if not isinstance(t, torch.Tensor) or tuple(t.shape) != want:
                    got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                    raise CheckFailed(f"cache.{name}[{layer}] has the wrong shape {step}",
                                      expected=f"(B, n_head, len, head_size) = {want}", got=str(got),
                                      hint="store k and v after splitting the heads, and append along dim 2")
    held = sum(t.numel() * t.element_size() for t in list(cache.k) + list(cache.v))
    want = formula_bytes(cfg.n_layer, cfg.n_head, hs, 4, T + 1) * B
    if held != want:
        raise CheckFailed("the cache tensors hold a different number of bytes than the formula",
                          expected=f"2 x {cfg.n_layer} layers x {cfg.n_head} heads x {hs} x 4 B x "
                                   f"{T + 1} tokens x {B} = {want:,} B", got=f"{held:,} B")
    ctx.metrics["cache_bytes_per_token"] = formula_bytes(cfg.n_layer, cfg.n_head, hs, 4, 1)
    return f"{cfg.n_layer} layers of k and v, (B, nh, T, hs); {held:,} B for {T + 1} tokens x {B} sequences"


@criterion("cached logits equal uncached logits")
def cached_logits(ctx):
    import torch

    model, cfg = build(ctx)
    g = torch.Generator().manual_seed(2)
    total = 20
    for B, prompt_len in ((1, 1), (2, 5), (3, 12)):
        seq = torch.randint(0, cfg.vocab_size, (B, total), generator=g)
        with torch.no_grad():
            full = logits_of(model(seq))  # the week-1 path: every position at once
        cache = new_cache(ctx, cfg)
        pre = cached_call(model, seq[:, :prompt_len], cache)
        if pre.shape != (B, prompt_len, cfg.vocab_size):
            raise CheckFailed("the prefill returned logits of the wrong shape",
                              expected=str((B, prompt_len, cfg.vocab_size)), got=str(tuple(pre.shape)))
        err = (pre - full[:, :prompt_len]).abs().max().item()
        if err > 1e-4 * max(1.0, full.abs().max().item()):
            raise CheckFailed(
                f"with an empty cache, a prompt of {prompt_len} tokens gives other logits than without a cache",
                got=f"max difference {err:.3g}",
                hint="the prompt's queries must still be causally masked when the cache is used "
                     "(mask[past:past+T, :S])")
        for t in range(prompt_len, total):
            step = cached_call(model, seq[:, t:t + 1], cache)
            err = (step[:, -1] - full[:, t]).abs().max().item()
            if err > 1e-4 * max(1.0, full.abs().max().item()):
                hint = ("the new token sits at position len(cache), not 0: offset the position embedding"
                        if t == prompt_len else
                        "check that every step appends to the cache and attends over all cached keys")
                raise CheckFailed(
                    f"decoding token {t} with the cache (prompt {prompt_len}, batch {B}) gives other "
                    f"logits than the full forward pass", got=f"max difference {err:.3g}", hint=hint)
    return "prompts of 1, 5 and 12 tokens, decoded to 20: every position matches (1e-4)"


@criterion("cached generation gives the same tokens")
def same_tokens(ctx):
    import torch

    model, cfg = build(ctx, seed=3)
    calls: list[int] = []
    hook = model.register_forward_pre_hook(lambda _m, args, kwargs=None: calls.append(args[0].shape[1])
                                           if args else None)
    try:
        g = torch.Generator().manual_seed(4)
        cases = ((1, 1, 8), (2, 4, 17), (1, 9, 30), (3, 2, cfg.block_size - 2))
        for B, prompt_len, new in cases:
            idx = torch.randint(0, cfg.vocab_size, (B, prompt_len), generator=g)
            calls.clear()
            try:
                cached = model.generate(idx, new, top_k=1, use_cache=True)
            except TypeError as exc:
                raise CheckFailed("generate does not take use_cache", got=str(exc),
                                  hint="generate(idx, max_new_tokens, temperature=1.0, top_k=None, use_cache=True)") from None
            cached_calls = list(calls)
            plain = model.generate(idx, new, top_k=1, use_cache=False)
            if cached.shape != (B, prompt_len + new):
                raise CheckFailed("generate(use_cache=True) returned the wrong shape",
                                  expected=str((B, prompt_len + new)), got=str(tuple(cached.shape)))
            if not torch.equal(cached, plain):
                first = (cached != plain).nonzero()[0].tolist()
                raise CheckFailed(
                    f"greedy tokens differ between use_cache=True and False (prompt {prompt_len}, {new} new)",
                    got=f"first difference at sequence {first[0]}, position {first[1]}",
                    hint="`cached logits equal uncached logits` above tells where the cache goes wrong")
            if cached_calls and max(cached_calls[1:] or [1]) > 1:
                raise CheckFailed("generate(use_cache=True) does not use the cache",
                                  got=f"forward saw sequences of lengths {cached_calls[:6]}...",
                                  hint="after the prompt, feed only the newest token (idx_next) with kv_cache=cache")
            if cached_calls and len(cached_calls) > new + 1:
                raise CheckFailed("generate(use_cache=True) calls the model more than once per token",
                                  got=f"{len(cached_calls)} calls for {new} tokens")
    finally:
        hook.remove()
    return "4 prompts and lengths up to block_size: identical greedy tokens, one token per decode call"


def _median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


@criterion("time per token stays flat with the cache, grows without")
def flat_time(ctx):
    import torch

    short, long = (32, 256) if ctx.fast else (32, 512)
    reps = 5 if ctx.fast else 9
    model, cfg = build(ctx, std=None, block_size=long + reps + 1, n_layer=2, n_head=4, n_embd=64)
    seq = torch.randint(0, cfg.vocab_size, (1, long + reps), generator=torch.Generator().manual_seed(5))
    result = {}
    with torch.no_grad():
        for length in (short, long):
            # without a cache: the next token needs a pass over the whole context
            result[("plain", length)] = _median_ms(lambda: model(seq[:, :length]), reps)
            # with a cache: prefill `length` tokens once, then time single-token decode steps
            cache = new_cache(ctx, cfg)
            cached_call(model, seq[:, :length], cache)
            steps = iter(range(length, length + reps))
            result[("cached", length)] = _median_ms(
                lambda: cached_call(model, seq[:, next(steps)].view(1, 1), cache), reps)
    cs, cl = result[("cached", short)], result[("cached", long)]
    ps, pl = result[("plain", short)], result[("plain", long)]
    ctx.metrics.update(cached_ms_short=round(cs, 3), cached_ms_long=round(cl, 3),
                       uncached_ms_short=round(ps, 3), uncached_ms_long=round(pl, 3),
                       short_context=short, long_context=long)
    detail = (f"per new token at {short} / {long} tokens of context: with cache {cs:.2f} / {cl:.2f} ms, "
              f"without {ps:.2f} / {pl:.2f} ms")
    if cl > 2.0 * cs and cl > 1.0:
        raise CheckFailed("with the cache, a new token still costs more as the context grows",
                          got=detail, hint="decode steps must feed one token, not recompute the prefix")
    if cl * 2 > pl:
        raise CheckFailed("the cached step is not much cheaper than a full pass at a long context",
                          got=detail, hint="is the cached path recomputing the whole sequence?")
    return detail
