"""The transformer lab's criteria on the model as a whole: shapes, eval-mode determinism, the
initial and the per-position loss, position information, layer norms and the residual stream."""

from __future__ import annotations

import math

from zero2vllm.labs.framework import CheckFailed
from zero2vllm.labs.transformer.harness import (
    SMALL, VOCAB, CheckWarning, build, call, full_logits, logits_change, probe_forward,
    randomize, tokens,
)


def output_shapes(ctx):
    import torch

    model = build(ctx)
    B, T = 2, SMALL["block_size"]
    idx = tokens((B, T))
    with torch.no_grad():
        logits, loss = call(model, idx)
        if tuple(logits.shape) != (B, T, VOCAB):
            hint = "return the logits of every position, not only the last"
            if tuple(logits.shape) == (B * T, VOCAB):
                hint = "reshape to (B, T, vocab_size) when targets is None"
            raise CheckFailed("forward(idx) gave logits of the wrong shape",
                              expected=f"(B, T, vocab_size) = {(B, T, VOCAB)}",
                              got=str(tuple(logits.shape)), hint=hint)
        if loss is not None:
            raise CheckFailed("forward(idx) without targets must return loss None", got=repr(loss))
        if not bool(torch.isfinite(logits).all()):
            raise CheckFailed(
                "the logits contain NaN or inf", got=f"{int((~torch.isfinite(logits)).sum())} "
                f"of {logits.numel()} values",
                hint="a softmax over a row that is all -inf gives NaN: is the mask inverted "
                     "(masked_fill where tril == 1), or the softmax over the wrong dimension?")
        logits, loss = full_logits(model, idx, tokens((B, T), 1))
        if tuple(logits.shape) != (B, T, VOCAB):
            raise CheckFailed("forward(idx, targets) gave logits of the wrong shape",
                              expected=f"{(B, T, VOCAB)} (or {(B * T, VOCAB)})",
                              got=str(tuple(logits.shape)))
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise CheckFailed("forward(idx, targets) must return the loss as a scalar tensor",
                              got=repr(loss)[:200], hint="F.cross_entropy(...) returns one")
        short, _ = call(model, idx[:, :5])
        if tuple(short.shape) != (B, 5, VOCAB):
            raise CheckFailed("a sequence shorter than block_size gave the wrong shape",
                              expected=str((B, 5, VOCAB)), got=str(tuple(short.shape)),
                              hint="use T from idx.shape, and slice the mask to [:T, :T]")
    ctx.metrics["params_small"] = sum(p.numel() for p in model.parameters())
    return f"logits (B, T, {VOCAB}), scalar loss, shorter sequences fine"


def dropout_eval(ctx):
    import torch

    model = build(ctx, dropout=0.5)  # eval mode
    randomize(model, std=0.2, seed=2)
    idx = tokens((2, SMALL["block_size"]), 8)
    outs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        with torch.no_grad():
            outs.append(full_logits(model, idx)[0])
    if not torch.equal(outs[0], outs[1]):
        raise CheckFailed(
            "dropout is active in eval mode: two forward passes after model.eval() give "
            "different logits",
            expected="identical logits after model.eval() (dropout only while training)",
            got=f"logits differ by up to {float((outs[0] - outs[1]).abs().max()):.3g}",
            hint="use nn.Dropout modules, or F.dropout(x, p, training=self.training): "
                 "F.dropout's training defaults to True")
    return "two eval forward passes with dropout 0.5 give the same logits"


def initial_loss(ctx):
    import torch

    expected = math.log(VOCAB)
    losses = []
    for seed in range(3):
        model = build(ctx, seed=seed, n_layer=4, n_embd=64, block_size=32)
        with torch.no_grad():
            _, loss = call(model, tokens((8, 32), seed), tokens((8, 32), seed + 10))
        losses.append(float(loss))
    mean = sum(losses) / len(losses)
    ctx.metrics["initial_loss"] = round(mean, 4)
    if not math.isfinite(mean) or abs(mean - expected) > 0.35:
        raise CheckFailed(
            "a freshly initialised model should guess all characters about equally",
            expected=f"loss near ln({VOCAB}) = {expected:.3f} (within 0.35)", got=f"{mean:.3f}",
            hint="initialise Linear and Embedding weights small (normal, std 0.02) and biases "
                 "to zero; a large loss means confident wrong guesses from the start",
        )
    return f"{mean:.3f} (ln {VOCAB} = {expected:.3f})"


def loss_formula(ctx):
    import torch
    import torch.nn.functional as F

    model = build(ctx)
    randomize(model)
    B, T = 4, SMALL["block_size"]
    idx, targets = tokens((B, T), 2), tokens((B, T), 3)
    with torch.no_grad():
        logits, loss = full_logits(model, idx)
        _, loss = call(model, idx, targets)
    if loss is None:
        raise CheckFailed("forward(idx, targets) returned no loss")
    loss = float(loss)

    def ce(lg, tg):
        return float(F.cross_entropy(lg.reshape(-1, VOCAB), tg.reshape(-1)))

    right = ce(logits, targets)
    ctx.metrics["loss_random_weights"] = round(loss, 4)
    if math.isclose(loss, right, rel_tol=1e-3, abs_tol=1e-4):
        return f"{loss:.4f} = cross_entropy(logits, targets)"
    mistakes = [
        (ce(logits[:, :-1], targets[:, 1:]),
         "targets are shifted again inside forward: logits[:, t] is scored against "
         "targets[:, t + 1], two tokens ahead",
         "the trainer already passes the next token as targets; compare logits[:, t] with "
         "targets[:, t] and do not shift"),
        (ce(logits[:, 1:], targets[:, :-1]),
         "targets are shifted the wrong way: logits[:, t + 1] is scored against targets[:, t]",
         "targets[:, t] is the token after idx[:, t]; compare logits[:, t] with targets[:, t]"),
        (ce(logits, idx), "the loss compares the logits with the input tokens, not the targets",
         "use targets: F.cross_entropy(logits.view(B*T, V), targets.view(B*T))"),
        (float(F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), reduction="sum")),
         "the loss is summed over positions instead of averaged", "use the mean (the default)"),
        (ce(logits.softmax(-1), targets),
         "cross_entropy was given probabilities (softmax already applied), not logits",
         "F.cross_entropy applies log_softmax itself: pass the raw logits"),
        (float(F.nll_loss(logits.reshape(-1, VOCAB), targets.reshape(-1))),
         "nll_loss on raw logits: the log_softmax is missing",
         "use F.cross_entropy(logits, targets), or F.nll_loss(F.log_softmax(logits, -1), ...)"),
    ]
    for value, message, hint in mistakes:
        if math.isclose(loss, value, rel_tol=1e-3, abs_tol=1e-4):
            raise CheckFailed(f"wrong loss: {message}",
                              expected=f"{right:.4f}", got=f"{loss:.4f}", hint=hint)
    raise CheckFailed("the loss is not the mean cross-entropy of logits[:, t] against targets[:, t]",
                      expected=f"{right:.4f}", got=f"{loss:.4f}",
                      hint="F.cross_entropy(logits.view(B*T, V), targets.view(B*T))")


def positions(ctx):
    import torch

    # one layer: deeper causal models can infer order from the mask alone (each position
    # sees a different number of tokens), one layer of attention cannot
    model = build(ctx, n_layer=1)
    randomize(model, seed=3)
    T = 12
    moved = 0.0
    for seed in range(3):
        idx = tokens((1, T), 30 + seed)
        idx[0, 1] = (idx[0, 0] + 1 + seed) % VOCAB  # tokens 0 and 1 differ
        swapped = idx.clone()
        swapped[0, 0], swapped[0, 1] = idx[0, 1], idx[0, 0]
        with torch.no_grad():
            a, _ = full_logits(model, idx)
            b, _ = full_logits(model, swapped)
        moved = max(moved, float((a[0, 2:] - b[0, 2:]).abs().max() / (a.abs().max() + 1e-6)))
    if moved < 1e-5:
        raise CheckFailed(
            "the model cannot tell the order of the tokens: swapping tokens 0 and 1 leaves "
            "every later prediction unchanged, so no position information reaches it",
            expected="a different prediction for 'ab...' than for 'ba...'",
            got=f"largest change {moved:.1e} of the logits' size",
            hint="add position embeddings: x = tok_emb(idx) + pos_emb(torch.arange(T))")
    return "swapping two earlier tokens changes later predictions"


def layer_norm(ctx):
    n_layer = 2
    probe, _, _ = probe_forward(ctx, randomized=False, n_layer=n_layer)  # the learner's init: gains 1
    if not probe.output_inputs:
        raise CheckWarning("could not check: no Linear or matmul producing vocab_size logits "
                           "from n_embd channels was seen")
    last = probe.output_inputs[-1]
    off = probe.unit_rms_rows(last)
    norms = len(probe.normalised)
    if not probe.is_normalised(last):
        what = ("no layer norm at all" if norms == 0
                else "no layer norm before the output layer (final ln_f)")
        raise CheckFailed(
            f"{what}: the rows lm_head reads are not normalised",
            expected="lm_head(ln_f(x)) in a pre-LN model (or the last block's norm in post-LN): "
                     "rows with mean 0 and RMS 1 at initialisation",
            got=f"{norms} normalised tensor(s) in a {n_layer}-block model; the input of the "
                f"output layer has rows with RMS off 1 by {off:.2f}",
            hint="x = self.ln_f(x) before logits = self.lm_head(x)")
    if norms < 2 * n_layer:
        raise CheckFailed(
            f"layer norm missing in the blocks: {norms} normalisation(s) in a {n_layer}-block "
            "model",
            expected=f"at least {2 * n_layer}: each block normalises around its attention and "
                     "around its MLP (pre-LN: x + attn(ln_1(x)), x + mlp(ln_2(x)))",
            got=str(norms), hint="apply ln_1 and ln_2 in Block.forward")
    return f"{norms} normalisations in {n_layer} blocks, lm_head reads normalised rows"


def residual(ctx):
    import torch

    ratios = []
    for seed in range(3):
        # small random weights, whatever the learner's init (a zero-initialised lm_head would
        # hide everything): attention near uniform, so only a residual stream favours token t
        model = build(ctx, seed=seed)
        randomize(model, std=0.02, seed=seed)
        T = SMALL["block_size"]
        diff = logits_change(model, T, 40 + seed)
        own = torch.stack([diff[t, t] for t in range(8, T)])
        first = torch.stack([diff[0, t] for t in range(8, T)])
        ratios.append(float(own.mean() / (first.mean() + 1e-12)))
    ratio = sorted(ratios)[1]
    if ratio < 2.0:
        raise CheckFailed(
            "residual connections missing: at initialisation a position's own token matters "
            "no more than any earlier token, so each block replaces x instead of adding to it",
            expected="x = x + attn(ln_1(x)) and x = x + mlp(ln_2(x)): the token at t dominates "
                     "the logits at t before training",
            got=f"own token / first token influence {ratio:.1f} (a residual stream gives > 2)",
            hint="add each sublayer's output to its input: x = x + self.attn(self.ln_1(x))")
    return f"own token / first token influence at init {ratio:.0f}x"
