"""The kv-cache lab's criteria, run on the learner's model.py by zero2vllm.labs.runner.

The interface is in the scaffold's docstring: KVCache(config), model(idx, kv_cache=cache),
cache.k / cache.v per layer, generate(..., use_cache=True). Every criterion compares the cached
path with the learner's own uncached path (or the uncached sliding window past block_size), so
it judges the cache, not the rest of the model; memory and work are measured (tensor storage,
matmul FLOPs), never taken from a formula or the code's structure.
"""

from __future__ import annotations

from zero2vllm.labs.framework import CheckFailed, CheckWarning, criterion
from zero2vllm.labs.kv_cache.probe import (
    SMALL, build, cached_call, close, flops, full, generate, held_bytes, median_ms, new_cache,
    not_greedy, rows_hint,
)

SHAPES = "cache holds the expected tensors"


def setup(ctx) -> None:
    import torch

    # One thread: timings are steadier, and a 2-core CI machine is not oversubscribed.
    torch.set_num_threads(1)


@criterion(SHAPES)
def cache_tensors(ctx):
    import torch

    from zero2vllm.instruments.kvprofile import formula_bytes

    model, cfg = build(ctx)
    hs = cfg.n_embd // cfg.n_head
    B, T = 2, 7
    idx = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=torch.Generator().manual_seed(1))
    cache = new_cache(ctx, cfg)
    cached_call(model, idx[:, :T], cache)
    for step, length in (("after a prompt of 7 tokens", T), ("after one more token", T + 1)):
        if length > T:
            try:
                cached_call(model, idx[:, T:], cache)
            except CheckFailed:
                raise
            except Exception as exc:  # noqa: BLE001 - the learner's error, explained
                raise CheckFailed("feeding one token onto a filled cache raised "
                                  f"{type(exc).__name__}: {str(exc)[:200]}",
                                  hint="update must append along the time dimension (dim=2) of "
                                       "(B, n_head, T, head_size), and attention must use all of it") from None
        for name in ("k", "v"):
            try:
                missing = [i for i in range(cfg.n_layer) if not hasattr(getattr(cache, name)[i], "shape")]
            except Exception:  # noqa: BLE001 - no such attribute or not indexable: reported below
                missing = []
            if missing and len(missing) < cfg.n_layer:
                raise CheckFailed(f"after the prompt, cache.{name}[{missing[0]}] holds nothing while other "
                                  "layers hold tensors",
                                  hint="each layer writes its own slot: are the per-layer caches aliased, or "
                                       "does every layer write slot 0?")
        if len(cache) != length:
            twice = len(cache) == 2 * length
            raise CheckFailed(f"len(cache) is wrong {step}", expected=str(length), got=str(len(cache)),
                              hint="is update called twice per layer (the cache appended twice)?" if twice
                              else "each forward call appends its T_new positions to every layer")
        for name in ("k", "v"):
            tensors = getattr(cache, name, None)
            try:
                tensors = [tensors[i] for i in range(cfg.n_layer)] if len(tensors) == cfg.n_layer else None
            except Exception:  # noqa: BLE001 - not indexable: reported below
                tensors = None
            if tensors is None:
                raise CheckFailed(f"cache.{name} should hold one tensor per layer",
                                  expected=f"cache.{name}[0..{cfg.n_layer - 1}]",
                                  got=type(getattr(cache, name, None)).__name__)
            for layer, t in enumerate(tensors):
                want = (B, cfg.n_head, length, hs)
                if not isinstance(t, torch.Tensor) or tuple(t.shape) != want:
                    got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                    raise CheckFailed(f"cache.{name}[{layer}] has the wrong shape {step}",
                                      expected=f"(B, n_head, len, head_size) = {want}", got=str(got),
                                      hint="store k and v after splitting the heads, and append along dim 2")
        for layer in range(1, cfg.n_layer):
            if torch.equal(cache.k[layer], cache.k[0]):
                raise CheckFailed(f"cache.k[{layer}] holds the same keys as cache.k[0] {step}",
                                  hint="each layer needs its own slot: are the per-layer caches aliased "
                                       "(e.g. [[]] * n_layer) or does every layer write slot 0?")
        if torch.equal(cache.k[0], cache.v[0]):
            raise CheckFailed(f"cache.v[0] holds the same tensor as cache.k[0] {step}",
                              hint="store v in cache.v, k in cache.k")
    other = ctx.module.KVCache(cfg)
    if len(other) != 0:
        raise CheckFailed("a new KVCache is not empty while another one is in use",
                          expected="len(KVCache(config)) == 0", got=str(len(other)),
                          hint="is the storage shared by every KVCache (a class attribute or a mutable "
                               "default argument)?")
    ctx.metrics["cache_bytes_per_token"] = formula_bytes(cfg.n_layer, cfg.n_head, hs, 4, 1)
    return f"{cfg.n_layer} layers of k and v, (B, nh, T, hs), growing by T_new per call"


@criterion("cache memory matches the formula", needs=(SHAPES,))
def cache_memory(ctx):
    import torch

    from zero2vllm.instruments.kvprofile import formula_bytes

    model, cfg = build(ctx)
    hs, B, L = cfg.n_embd // cfg.n_head, 2, cfg.block_size
    want = formula_bytes(cfg.n_layer, cfg.n_head, hs, 4, L) * B
    seq = torch.randint(0, cfg.vocab_size, (B, L), generator=torch.Generator().manual_seed(6))
    formula = (f"2 x {cfg.n_layer} layers x {cfg.n_head} heads x {hs} x 4 B x {L} tokens x {B} "
               f"= {want:,} B")
    found = []
    for how, prefill in (("a full-block prompt", L), ("a prompt and 8 decode steps", L - 8)):
        cache = new_cache(ctx, cfg)
        cached_call(model, seq[:, :prefill], cache)
        for t in range(prefill, L):
            cached_call(model, seq[:, t:t + 1], cache)
        held = held_bytes(cache)
        if held == 0:
            raise CheckWarning("could not check: the KVCache object holds no tensors this check can "
                               "find (they live outside it)")
        if held < want * 0.99:
            raise CheckFailed(f"after {how} the cache holds fewer bytes than K and V of every position "
                              "need", expected=formula, got=f"{held:,} B",
                              hint="are batch rows sharing one copy (expand), or is it stored in lower "
                                   "precision?")
        if held > want * 1.25:
            raise CheckFailed(f"after {how} the cache holds {held / want:.2f}x the formula's bytes",
                              expected=formula, got=f"{held:,} B of tensor storage reachable from the cache",
                              hint="keep a copy (k.clone()) rather than a view into the fused q/k/v "
                                   "activation, and drop old tensors: nothing but k and v per layer")
        found.append(held)
    return f"{max(found):,} B held at {L} tokens x {B} sequences; the formula: {formula}"


@criterion("cached logits equal uncached logits", needs=(SHAPES,))
def cached_logits(ctx):
    import torch

    model, cfg = build(ctx)
    g = torch.Generator().manual_seed(2)
    total = 20
    for B, prompt_len in ((1, 1), (2, 5), (3, 12)):
        seq = torch.randint(0, cfg.vocab_size, (B, total), generator=g)
        ref = full(model, seq)
        cache = new_cache(ctx, cfg)
        pre = cached_call(model, seq[:, :prompt_len], cache)
        if tuple(pre.shape) != (B, prompt_len, cfg.vocab_size):
            raise CheckFailed("the prefill returned logits of the wrong shape",
                              expected=str((B, prompt_len, cfg.vocab_size)), got=str(tuple(pre.shape)))
        ok, err = close(pre, ref[:, :prompt_len])
        if not ok:
            raise CheckFailed(
                f"with an empty cache, a prompt of {prompt_len} tokens gives other logits than without a cache",
                got=f"max difference {err:.3g}",
                hint=rows_hint(pre, ref[:, :prompt_len]) or
                "the prompt's queries must still be causally masked when the cache is used")
        for t in range(prompt_len, total):
            step = cached_call(model, seq[:, t:t + 1], cache)
            ok, err = close(step[:, -1], ref[:, t])
            if not ok:
                hint = rows_hint(step[:, -1], ref[:, t]) or (
                    "the new token sits at position len(cache), not 0: advance the position ids, and "
                    "let its query see every cached key" if t == prompt_len else
                    "check that every step appends to the cache and attends over all cached keys")
                raise CheckFailed(
                    f"decoding token {t} with the cache (prompt {prompt_len}, batch {B}) gives other "
                    f"logits than the full forward pass", got=f"max difference {err:.3g}", hint=hint)
    return "prompts of 1, 5 and 12 tokens, decoded to 20: every position matches"


@criterion("several tokens onto a filled cache (chunked prefill)", needs=(SHAPES,))
def chunked(ctx):
    import torch

    model, cfg = build(ctx, seed=7)
    B, total = 2, 40
    seq = torch.randint(0, cfg.vocab_size, (B, total), generator=torch.Generator().manual_seed(8))
    ref = full(model, seq)
    cache = new_cache(ctx, cfg)
    start = 0
    for size in (5, 3, 1, 6, 2, 11, 12):
        past = start
        try:
            out = cached_call(model, seq[:, start:start + size], cache)
        except CheckFailed:
            raise
        except Exception as exc:  # noqa: BLE001
            raise CheckFailed(f"feeding {size} tokens onto a cache of {past} raised "
                              f"{type(exc).__name__}: {str(exc)[:200]}",
                              hint="the causal mask of such a call is (T, past + T): query i sits at "
                                   "position past + i and sees keys 0 .. past + i") from None
        ok, err = close(out, ref[:, start:start + size])
        if not ok:
            raise CheckFailed(f"feeding {size} tokens at once onto a cache of {past} gives other logits "
                              "than the full pass", got=f"max difference {err:.3g}",
                              hint="offset the causal mask by the cached length: query i of this call "
                                   "sits at position past + i (mask[past:past + T, :past + T])")
        start += size
    return "chunks of 5, 3, 1, 6, 2, 11 and 12 tokens onto the cache: every position matches"


@criterion("cached generation gives the same tokens", needs=(SHAPES,))
def same_tokens(ctx):
    import torch

    g = torch.Generator().manual_seed(4)
    bs = SMALL["block_size"]
    cases = ((1, 1, 8), (2, 4, 17), (1, 9, 1), (1, 9, 30), (3, 2, bs - 2))
    for B, prompt_len, new in cases:
        # a fresh model each time: state kept between generate calls is the next criterion's
        model, cfg = build(ctx, seed=3)
        idx = torch.randint(0, cfg.vocab_size, (B, prompt_len), generator=g)
        where = f"prompt {prompt_len}, {new} new" + (", exactly block_size in all"
                                                    if prompt_len + new == cfg.block_size else "")
        try:
            cached = generate(model, idx, new, top_k=1, use_cache=True)
        except CheckFailed:
            raise
        except Exception as exc:  # noqa: BLE001
            raise CheckFailed(f"generate(use_cache=True) raised {type(exc).__name__} ({where}): "
                              f"{str(exc)[:200]}",
                              hint="the last sampled token need not be fed to the model") from None
        if tuple(cached.shape) != (B, prompt_len + new):
            raise CheckFailed(f"generate(use_cache=True) returned the wrong shape ({where})",
                              expected=str((B, prompt_len + new)), got=str(tuple(cached.shape)))
        wrong = not_greedy(model, idx, cached, cfg.block_size)
        if wrong:
            at = "the first new token" if wrong[1] == prompt_len else f"position {wrong[1]}"
            raise CheckFailed(f"greedy tokens with the cache differ from the uncached model ({where})",
                              got=f"first wrong token: sequence {wrong[0]}, {at}",
                              hint="the first new token comes from the prefill's last logits; then feed "
                                   "each sampled token once")
        plain = generate(model, idx, new, top_k=1, use_cache=False)
        if tuple(plain.shape) != tuple(cached.shape) or (
                not torch.equal(plain, cached) and not_greedy(model, idx, plain, cfg.block_size)):
            raise CheckFailed(f"generate(use_cache=False) differs from the uncached greedy tokens ({where})",
                              hint="use_cache=False is the week-1 loop")
    return "5 prompts and lengths up to block_size: identical greedy tokens"


@criterion("each cache and each generate call stands alone", needs=(SHAPES,))
def independent(ctx):
    import torch

    model, cfg = build(ctx, seed=9)
    g = torch.Generator().manual_seed(10)
    a, b = (torch.randint(0, cfg.vocab_size, (1, 16), generator=g) for _ in range(2))
    ref_a, ref_b = full(model, a), full(model, b)
    ca, cb = new_cache(ctx, cfg), new_cache(ctx, cfg)
    cached_call(model, a[:, :9], ca)
    cached_call(model, b[:, :9], cb)
    for t in range(9, 16):  # interleaved decode steps on two live caches
        for seq, cache, ref, name in ((a, ca, ref_a, "first"), (b, cb, ref_b, "second")):
            ok, err = close(cached_call(model, seq[:, t:t + 1], cache)[:, -1], ref[:, t])
            if not ok:
                raise CheckFailed(f"with two caches alive, decoding on the {name} gives other logits",
                                  got=f"max difference {err:.3g}",
                                  hint="a KVCache must keep its own tensors: no class attributes, no "
                                       "state kept in the model between calls")
    prompts = [torch.randint(0, cfg.vocab_size, (1, n), generator=g) for n in (5, 11, 3)]
    for i, p in enumerate(prompts):
        try:
            got = generate(model, p, 12, top_k=1, use_cache=True)
        except CheckFailed:
            raise
        except Exception as exc:  # noqa: BLE001
            raise CheckFailed(f"call {i + 1} of generate (three in a row, other prompts) raised "
                              f"{type(exc).__name__}: {str(exc)[:160]}",
                              hint="make a new KVCache in every generate call: a cache kept from the "
                                   "previous call holds its prompt") from None
        wrong = tuple(got.shape) != (1, p.shape[1] + 12) or not_greedy(model, p, got, cfg.block_size)
        if wrong and i == 0:
            raise CheckFailed("generate(use_cache=True) gives other greedy tokens than the uncached model",
                              hint="see `cached generation gives the same tokens`")
        if wrong:
            raise CheckFailed(f"call {i + 1} of generate (three in a row, other prompts) gives other "
                              "greedy tokens than the uncached model",
                              hint="make a new KVCache in every generate call: a cache kept from the "
                                   "previous call holds its prompt")
    return "two live caches interleaved, and three generate calls in a row: each on its own"


@criterion("generation past block_size matches the sliding window", needs=(SHAPES,))
def past_block(ctx):
    import torch

    # weaker weights than elsewhere: attention spreads over the context, so a token's position
    # matters and a cropped cache (keys at their old positions) shows
    model, cfg = build(ctx, seed=11, std=0.1)
    g = torch.Generator().manual_seed(12)
    bs = cfg.block_size
    for prompt_len, new in ((30, bs - 29), (30, 40), (bs, 3), (bs + 5, 4)):
        idx = torch.randint(0, cfg.vocab_size, (3, prompt_len), generator=g)
        where = f"prompt {prompt_len} + {new} new tokens, block_size {bs}"
        try:
            got = generate(model, idx, new, top_k=1, use_cache=True)
        except CheckFailed:
            raise
        except Exception as exc:  # noqa: BLE001
            raise CheckFailed(f"generate(use_cache=True) raised {type(exc).__name__} with {where}: "
                              f"{str(exc)[:160]}",
                              hint="past block_size the cache is never cropped here: fall back to the "
                                   "uncached sliding window (idx[:, -block_size:])") from None
        if tuple(got.shape) != (idx.shape[0], prompt_len + new) or not_greedy(model, idx, got, bs):
            raise CheckFailed(f"with {where}, the cached generate differs from the uncached sliding window",
                              hint="learned positions stop at block_size: once the context is cropped, "
                                   "the cache's keys sit at the wrong positions; fall back to the window")
    return "prompts up to block_size + 5 and generations past it: same tokens as the sliding window"


@criterion("sampling settings are honoured with the cache", needs=(SHAPES,))
def sampling(ctx):
    import torch

    model, cfg = build(ctx, seed=13, std=0.1)
    g = torch.Generator().manual_seed(14)
    idx = torch.randint(0, cfg.vocab_size, (3, 4), generator=g)
    torch.manual_seed(15)
    out = generate(model, idx, 30, temperature=1.0, top_k=3, use_cache=True)
    ref = full(model, out[:, :-1])
    top3 = ref[:, 3:].topk(3, dim=-1).indices
    if not (top3 == out[:, 4:, None]).any(-1).all():
        raise CheckFailed("with use_cache=True and top_k=3, a sampled token is not among the 3 most likely",
                          hint="pass temperature and top_k to the sampling in the cached loop too")
    torch.manual_seed(16)
    out = generate(model, idx, 30, temperature=1.0, use_cache=True)
    probs = torch.softmax(full(model, out[:, :-1])[:, 3:], dim=-1)
    p_all_greedy = probs.max(-1).values.prod().item()
    if p_all_greedy < 1e-6 and (probs.argmax(-1) == out[:, 4:]).all():
        raise CheckFailed("with use_cache=True and temperature 1, generate always picks the most likely "
                          f"token (chance of that when sampling: {p_all_greedy:.1g})",
                          hint="sample (torch.multinomial) in the cached loop, as without the cache")
    torch.manual_seed(17)
    out = generate(model, idx, 30, temperature=1e-4, use_cache=True)
    logits = full(model, out[:, :-1])[:, 3:]
    chosen = logits.gather(-1, out[:, 4:, None]).squeeze(-1)
    if ((logits.max(-1).values - chosen) > 0.01).any():
        raise CheckFailed("with use_cache=True and temperature 1e-4, generate picks tokens far from the "
                          "most likely one", hint="divide the logits by the temperature in the cached loop")
    return "top_k=3, temperature 1 and 1e-4 behave as they should with the cache"


@criterion("decoding does one token's work (not the whole prefix)", needs=(SHAPES,))
def work(ctx):
    import torch

    model, cfg = build(ctx, std=None, block_size=96, n_embd=64)
    seq = torch.randint(0, cfg.vocab_size, (1, 96), generator=torch.Generator().manual_seed(5))
    step = {}
    for length in (16, 80):
        cache = new_cache(ctx, cfg)
        cached_call(model, seq[:, :length], cache)
        step[length] = flops(lambda: cached_call(model, seq[:, length:length + 1], cache))
    if step[16] == 0:
        raise CheckWarning("could not check: torch counted no matmul FLOPs in a decode step")
    # Attention over one more cached position costs ~4 * n_embd FLOPs per layer; recomputing any
    # projection of it costs >= 2 * n_embd^2. The bar sits well between the two.
    per_pos = (step[80] - step[16]) / (64 * cfg.n_layer)
    detail = (f"one decode step: {step[16] / 1e6:.2f} MFLOP at 16 tokens of context, "
              f"{step[80] / 1e6:.2f} MFLOP at 80")
    if per_pos > 16 * cfg.n_embd:
        raise CheckFailed("a decode step's work grows with the context beyond attention over the cache",
                          got=detail, hint="the cached keys and values must be reused, not recomputed "
                                           "from the prefix")
    prompt, new = 8, 24
    idx = seq[:, :prompt]
    cached = flops(lambda: generate(model, idx, new, top_k=1, use_cache=True))
    uncached = sum(flops(lambda: full(model, seq[:, :t])) for t in range(prompt, prompt + new, 8)) * 8
    ctx.metrics.update(decode_mflop_16=round(step[16] / 1e6, 3), decode_mflop_80=round(step[80] / 1e6, 3),
                       generate_flop_ratio=round(cached / uncached, 4))
    if cached > 0.25 * uncached:
        raise CheckFailed("generate(use_cache=True) does about as much work as running the whole prefix "
                          "every step", got=f"{cached / uncached:.0%} of the uncached loop's FLOPs "
                                            f"for {prompt} + {new} tokens",
                          hint="after the prefill, feed only the newest token (idx_next) with kv_cache=cache")
    return f"{detail}; generate: {cached / uncached:.1%} of the uncached loop's FLOPs"


@criterion("time per token stays flat with the cache, grows without", needs=(SHAPES,))
def flat_time(ctx):
    import torch

    short, long = (32, 256) if ctx.fast else (32, 512)
    reps = 5 if ctx.fast else 9
    model, cfg = build(ctx, std=None, block_size=long + reps + 1, n_layer=2, n_head=4, n_embd=64)
    seq = torch.randint(0, cfg.vocab_size, (1, long + reps), generator=torch.Generator().manual_seed(5))
    result = {}
    with torch.no_grad():
        for length in (short, long):
            result[("plain", length)] = median_ms(lambda: model(seq[:, :length]), reps)
            cache = new_cache(ctx, cfg)
            cached_call(model, seq[:, :length], cache)
            steps = iter(range(length, length + reps))
            result[("cached", length)] = median_ms(
                lambda: cached_call(model, seq[:, next(steps)].view(1, 1), cache), reps)
    cs, cl = result[("cached", short)], result[("cached", long)]
    ps, pl = result[("plain", short)], result[("plain", long)]
    ctx.metrics.update(cached_ms_short=round(cs, 3), cached_ms_long=round(cl, 3),
                       uncached_ms_short=round(ps, 3), uncached_ms_long=round(pl, 3),
                       short_context=short, long_context=long)
    detail = (f"per new token at {short} / {long} tokens of context: with cache {cs:.2f} / {cl:.2f} ms, "
              f"without {ps:.2f} / {pl:.2f} ms")
    # FLOPs (above) judge the work; wall time on a shared machine is noisy, so only a cached step
    # no faster than a whole pass fails here.
    if cl > 0.7 * pl:
        raise CheckFailed("the cached step is not much faster than a full pass at a long context",
                          got=detail, hint="is the cached path copying or recomputing the whole sequence?")
    return detail
