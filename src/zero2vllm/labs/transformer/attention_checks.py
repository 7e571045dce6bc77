"""The transformer lab's attention criteria: causality (and naming how it leaks), heads, and
the score scaling, read off one forward pass by probes.Probe."""

from __future__ import annotations

from zero2vllm.labs.framework import CheckFailed
from zero2vllm.labs.transformer.harness import (
    SMALL, CheckWarning, build, full_logits, leaks, probe_forward, tokens,
)


def causality(ctx):
    T = SMALL["block_size"]
    pairs = T * (T - 1) // 2
    found, reads_past = leaks(ctx, SMALL["n_layer"])
    ctx.metrics["causal_leaks"] = len(found)
    if not found:
        if reads_past == 0:
            raise CheckFailed(
                "no position reads the tokens before it: the attention does not mix positions",
                expected="logits at position t change when token 0 changes (t > 0)",
                got="changing token 0 changed only position 0",
                hint="q, k, v must be (B, n_head, T, head_size) before q @ k^T (transpose(1, 2) "
                     "after the view), and the weights must multiply v")
        return f"none of the {pairs} earlier positions reacted to a later token"
    one_layer, _ = leaks(ctx, 1)
    probe, _, _ = probe_forward(ctx, n_layer=1)
    first = min(found, key=lambda p: (p[1], p[0]))
    if probe.query_maps and not probe.keys_maps:
        raise CheckFailed(
            "softmax over the wrong dimension: the attention weights are normalised over the "
            "queries (dim -2), so each position mixes in scores computed for later positions",
            expected="softmax(att, dim=-1): each query's weights over the keys sum to 1",
            got=f"columns of the weights sum to 1, not rows ({len(found)} earlier logits "
                "changed with later tokens)",
            hint="att = F.softmax(att, dim=-1) (a hand-written softmax sums over dim=-1 too)")
    if one_layer and all(j == t + 1 for j, t in one_layer):
        raise CheckFailed(
            "the causal mask lets each position see one step ahead: logits at position t "
            "change when token t + 1 changes",
            expected="position t attends to positions 0..t only",
            got=f"in a 1-layer model, {len(one_layer)} positions read the next token",
            hint="mask with torch.tril(torch.ones(T, T)) (diagonal 0): keep s <= t, fill the "
                 "rest with -inf before the softmax")
    if len(one_layer) == pairs:
        raise CheckFailed(
            "attention without a causal mask: every position sees the whole sequence, "
            "including the tokens it is meant to predict (future leakage)",
            expected="logits at position t depend only on tokens 0..t",
            got=f"all {pairs} (position, later token) pairs leak, e.g. position {first[1]} "
                f"changes with token {first[0]}",
            hint="att = att.masked_fill(tril[:T, :T] == 0, float('-inf')) before the softmax "
                 "(or F.scaled_dot_product_attention(..., is_causal=True), or attn_mask for "
                 "nn.MultiheadAttention)")
    raise CheckFailed(
        "not causal: some logits change when a later token changes (future leakage)",
        expected="logits at position t depend only on tokens 0..t",
        got=f"{len(found)} leaks, e.g. position {first[1]} changes with token {first[0]}",
        hint="check the mask (torch.tril, sliced [:T, :T]) and that it is applied in every "
             "head and layer, before the softmax")


def heads_split(ctx):
    import torch

    n_head, n_layer = SMALL["n_head"], SMALL["n_layer"]
    head_size = SMALL["n_embd"] // n_head
    probe, model, logits = probe_forward(ctx)
    found = probe.maps() / (2 * n_layer)  # per sequence, per layer
    if probe.maps():
        if found < n_head:
            what = "heads not split" if found <= 1 else f"only {found:g} of {n_head} heads"
            raise CheckFailed(
                f"{what}: found {found:g} attention map(s) per sequence per layer",
                expected=f"n_head = {n_head} maps, one per head, each over head_size = "
                         f"n_embd // n_head = {head_size} channels",
                got=f"{found:g} map(s) per layer",
                hint="view q, k, v as (B, T, n_head, head_size) and transpose to (B, n_head, T, "
                     "head_size) before q @ k^T, then put the heads back side by side (or "
                     "n_head Head modules of head_size each)")
        return f"{found:g} attention maps per sequence per layer ({n_head} heads)"
    # no attention weights seen: the same weights with one head must give other results
    # (possible when the parameters do not depend on n_head, as with one fused projection)
    one = build(ctx, n_head=1)
    try:
        one.load_state_dict(model.state_dict())
    except (RuntimeError, KeyError):
        raise CheckWarning(
            "could not check: no attention weights were visible (no (T, T) map of weights "
            "summing to 1, no F.scaled_dot_product_attention or nn.MultiheadAttention call) "
            "and the weights' shapes depend on n_head") from None
    idx = tokens((2, 11), 5)
    with torch.no_grad():
        single, _ = full_logits(one, idx)
        logits, _ = full_logits(model, idx)
    if torch.allclose(single, logits, atol=1e-5, rtol=1e-4):
        raise CheckFailed("heads not split: the model gives the same results with n_head = 1",
                          expected=f"{n_head} heads attending separately give different logits",
                          got="identical logits",
                          hint="split q, k, v into n_head heads of n_embd // n_head")
    return "differs from one head with the same weights"


def attention_scaling(ctx):
    from zero2vllm.labs.transformer.probes import describe_scale

    probe, _, _ = probe_forward(ctx)
    C = SMALL["n_embd"]
    if probe.scales:
        named = []
        for c, d in probe.scales:
            problem = describe_scale(c, d, C)
            if problem == "not scaled" and d in probe.prescaled and d != C:
                problem = None  # q or k was scaled before the product
            if problem and problem != "unknown":
                named.append((problem, c, d))
        if named:
            problem, c, d = named[0]
            raise CheckFailed(
                f"attention scores {problem}" + (": the scaling is missing" if problem ==
                                                  "not scaled" else ""),
                expected=f"scores = q @ k^T / sqrt(head_size) = q @ k^T * {d ** -0.5:.4f} "
                         f"(head_size {d})",
                got=f"scores = q @ k^T * {c:.4f}",
                hint="multiply by head_size ** -0.5 (k.shape[-1] ** -0.5): without it the "
                     "scores grow with head_size and the softmax saturates to one-hot")
        c, d = probe.scales[0]
        if describe_scale(c, d, C) == "not scaled":
            return f"q or k scaled before q @ k^T (head_size {d})"
        return f"scores scaled by {c:.4f} = 1/sqrt({d})"
    for scale, d in probe.sdpa_scales:
        if scale is not None and describe_scale(float(scale), d, C) not in (None, "unknown"):
            raise CheckFailed(
                f"F.scaled_dot_product_attention got scale={scale}",
                expected=f"the default 1/sqrt(head_size) = {d ** -0.5:.4f}",
                got=str(scale), hint="leave scale=None")
    if probe.fused:
        return f"{probe.fused[0]} scales by 1/sqrt(head_size) itself"
    raise CheckWarning("could not check: no softmax (or exp) input could be matched with a "
                       "q @ k^T product")
