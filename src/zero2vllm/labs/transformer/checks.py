"""The transformer lab's criteria, run on the learner's model.py by zero2vllm.labs.runner.

Each criterion builds small models from the learner's GPTConfig/GPT and judges behaviour, so
any correct design passes (fused or separate q/k/v, a list of Head modules, per-head tensors
with einsum, nn.MultiheadAttention, SDPA or a hand-written softmax, pre- or post-LN): which
logits move when which tokens change, what the attention weights are (probes.py reads them off
the values torch returns, whatever computed them), what the model does in eval mode and past
block_size. The cheap criteria come first; training runs only when they all pass.
"""

from __future__ import annotations

import math
import os
import time

from zero2vllm.labs.framework import CheckFailed, criterion
from zero2vllm.labs.transformer.harness import (
    SMALL, VOCAB, build, call, full_logits, leaks, logits_change, randomize, tokens, trainer,
)

try:
    from zero2vllm.labs.framework import CheckWarning
except ImportError:  # TEMPORARY until h1-labgate's framework lands: a warning fails instead
    class CheckWarning(CheckFailed):  # type: ignore[no-redef]
        pass

try:  # h1-labgate: criterion(name, needs=(...)); older frameworks take the name only
    criterion("probe", needs=())
except TypeError:
    _plain = criterion

    def criterion(name, needs=()):  # type: ignore[no-redef]
        return _plain(name)

# from the measured spread of correct designs under the check recipe (docs/labs.md): above
# the worst with a margin, below the mistakes only training can catch
CHECK_BAR = 2.45
LEAK_FLOOR = 1.8  # no correct model gets near this in the check's 400 steps: it reads the future
SHAPES = ("output shapes",)
EVAL = ("output shapes", "dropout off when not training")  # noise in eval hides all else


def setup(ctx) -> None:
    import torch

    # leave a core free: on a busy 2-core machine two spinning OpenMP threads run ~10x slower
    torch.set_num_threads(max(1, min(4, (os.cpu_count() or 2) - 1)))


@criterion("output shapes")
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


@criterion("dropout off when not training", needs=SHAPES)
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


@criterion("initial loss near ln(vocab)", needs=EVAL)
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


@criterion("loss on next-token targets", needs=EVAL)
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


def _probe(ctx, seed: int = 5, randomized: bool = True, T: int = 11, **fields):
    """One forward pass of a small model under the probe; T = 11 matches no other size."""
    import torch

    from zero2vllm.labs.transformer.probes import Probe

    model = build(ctx, **fields)
    if randomized:
        randomize(model, seed=seed)
    idx = tokens((2, T), seed)
    probe = Probe(T, model_width(fields), VOCAB)
    with torch.no_grad(), probe:
        logits, _ = full_logits(model, idx)
    return probe, model, logits


def model_width(fields) -> int:
    return fields.get("n_embd", SMALL["n_embd"])


@criterion("causality", needs=EVAL)
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
    probe, _, _ = _probe(ctx, n_layer=1)
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


@criterion("heads split", needs=EVAL)
def heads_split(ctx):
    import torch

    n_head, n_layer = SMALL["n_head"], SMALL["n_layer"]
    head_size = SMALL["n_embd"] // n_head
    probe, model, logits = _probe(ctx)
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


@criterion("attention scaling", needs=EVAL)
def attention_scaling(ctx):
    from zero2vllm.labs.transformer.probes import describe_scale

    probe, _, _ = _probe(ctx)
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


@criterion("position embeddings", needs=EVAL)
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


@criterion("layer norm", needs=EVAL)
def layer_norm(ctx):
    n_layer = 2
    probe, _, _ = _probe(ctx, randomized=False, n_layer=n_layer)  # the learner's init: gains 1
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


@criterion("residual connections", needs=EVAL)
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


@criterion("generate", needs=EVAL)
def generate(ctx):
    import torch

    block = SMALL["block_size"]
    model = build(ctx)
    randomize(model, std=0.2)
    if not hasattr(model, "generate"):
        raise CheckFailed("GPT has no generate method",
                          hint="def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None)")
    fed: list = []  # what each model(...) call received (a generate calling self.forward
    # directly bypasses the hook: then only the greedy comparison below judges it)
    model.register_forward_pre_hook(lambda m, args, kw: fed.append(
        (args[0] if args else kw["idx"]).clone()), with_kwargs=True)
    start = tokens((2, 3), 6)
    n_new = block + 5  # longer than the context: only the last block_size tokens fit
    torch.manual_seed(0)
    try:
        with torch.no_grad():
            out = model.generate(start.clone(), n_new, temperature=0.8, top_k=5)
    except (IndexError, RuntimeError, AssertionError, ValueError) as exc:
        raise CheckFailed(
            f"generating {n_new} tokens after 3 failed once the sequence was longer than "
            f"block_size = {block}: {type(exc).__name__}: {str(exc)[:200]}",
            hint="feed the model only the last block_size tokens: idx[:, -block_size:]",
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, 3 + n_new):
        raise CheckFailed("generate returned the wrong shape",
                          expected=f"(2, {3 + n_new}): the prompt plus max_new_tokens",
                          got=str(tuple(out.shape)) if isinstance(out, torch.Tensor) else type(out).__name__)
    if out.dtype != torch.long or int(out.min()) < 0 or int(out.max()) >= VOCAB:
        raise CheckFailed("generate returned invalid token ids",
                          expected=f"int64 ids in [0, {VOCAB})",
                          got=f"{out.dtype}, range [{out.min()}, {out.max()}]")
    if not torch.equal(out[:, :3], start):
        raise CheckFailed("generate changed the prompt", hint="append new tokens after idx")
    lengths = [int(x.shape[1]) for x in fed]
    if lengths and max(lengths) > block:
        raise CheckFailed("generate fed the model more than block_size tokens",
                          expected=f"at most {block}", got=str(max(lengths)),
                          hint="crop: idx_cond = idx[:, -block_size:]")
    if len(fed) == n_new:  # step i must see the last block_size tokens of out[:, :3 + i]
        for i, x in enumerate(fed):
            window = out[:, max(0, 3 + i - block):3 + i]
            if not torch.equal(x, window):
                what = (f"{x.shape[1]} tokens" if x.shape[1] != window.shape[1]
                        else "the first block_size tokens, not the last")
                raise CheckFailed(
                    f"generate step {i} fed the model {what}: the context must be a sliding "
                    "window of the last block_size tokens",
                    expected=f"out[:, {max(0, 3 + i - block)}:{3 + i}] ({window.shape[1]} tokens)",
                    got=f"{x.shape[1]} tokens", hint="idx_cond = idx[:, -block_size:]")
    # greedy (top_k=1) must follow the sliding window: argmax of the LAST position's logits
    # given the last block_size tokens, step after step
    with torch.no_grad():
        greedy = model.generate(start.clone(), n_new, top_k=1)
        want = start.clone()
        for _ in range(n_new):
            logits, _ = full_logits(model, want[:, -block:])
            want = torch.cat([want, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    if not torch.equal(greedy, want):
        step = int((greedy != want).any(0).nonzero()[0]) - 3
        if step == 0:
            raise CheckFailed("with top_k=1 the first new token is not the most likely one "
                              "after the prompt",
                              expected=str(want[:, 3].tolist()), got=str(greedy[:, 3].tolist()),
                              hint="sample from logits[:, -1, :] (the last position), after top-k")
        where = ("once the sequence passed block_size: crop to the LAST block_size tokens "
                 "(idx[:, -block_size:]), a sliding window") if 3 + step >= block - 1 else ""
        raise CheckFailed(f"greedy generation went astray at new token {step}" +
                          (f" {where}" if where else ""),
                          expected="at every step, the argmax of the last position's logits "
                                   "given the last block_size tokens",
                          got=f"{greedy[0, 3:].tolist()} instead of {want[0, 3:].tolist()}",
                          hint="idx_cond = idx[:, -block_size:]; logits[:, -1, :]; append")
    dropped = build(ctx, dropout=0.5)  # eval mode: generation must not sample dropout masks
    randomize(dropped, std=0.2, seed=2)
    gens = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        gens.append(dropped.generate(start.clone(), 12, top_k=1))
    if not torch.equal(gens[0], gens[1]):
        raise CheckFailed(
            "dropout is active during generation: greedy generate (top_k=1) after model.eval() "
            "gives different tokens from run to run",
            expected="the same greedy continuation every time",
            hint="generate must not switch the model to training; use F.dropout(..., "
                 "training=self.training)")
    return (f"(2, {3 + n_new}) valid ids; greedy follows the last-block_size sliding window "
            f"past block_size = {block}")


CHEAP = ("output shapes", "dropout off when not training", "initial loss near ln(vocab)",
         "loss on next-token targets", "causality", "heads split", "attention scaling", "position embeddings", "layer norm",
         "residual connections", "generate")


@criterion("overfit one batch", needs=SHAPES)
def overfit(ctx):
    import torch
    import torch.nn.functional as F

    train = trainer()
    data = train.load_data()
    g = torch.Generator().manual_seed(0)
    x, y = train.get_batch(data.train, 32, 4, g)
    model = build(ctx, block_size=32, n_layer=2, n_head=4, n_embd=64)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    steps = 100  # correct designs reach about 0.01 by then
    first = None
    for _ in range(steps):
        logits = train.logits_of(model, x)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        first = float(loss.detach()) if first is None else first
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        final = float(F.cross_entropy(train.logits_of(model, x).reshape(-1, VOCAB), y.reshape(-1)))
    ctx.metrics["overfit_loss"] = round(final, 4)
    bar = 0.3
    if not final <= bar:
        raise CheckFailed(
            f"{steps} AdamW steps (lr 3e-3) on one batch of 4 x 32 characters should memorise it",
            expected=f"loss <= {bar}", got=f"{first:.3f} -> {final:.3f}",
            hint="if it barely moves, gradients are not reaching the weights: are all layers "
                 "registered (nn.ModuleList, not a Python list)? is anything detached?",
        )
    return f"{first:.2f} -> {final:.3f} in {steps} steps"


@criterion("train on tiny Shakespeare", needs=CHEAP + ("overfit one batch",))
def trains(ctx):
    train = trainer()
    if ctx.fast:  # the tool's own tests: a quick run, a loose bar
        cfg = train.preset("check", max_steps=120, decay_steps=120, eval_from=120)
        bar = 2.9
    else:
        cfg = train.preset("check")
        bar = CHECK_BAR
    t0, c0 = time.perf_counter(), time.process_time()
    result = train.train(cfg, module=ctx.module)
    seconds = time.perf_counter() - t0
    ctx.metrics.update(train_steps=result.steps, train_seconds=round(seconds, 1),
                       train_cpu_seconds=round(time.process_time() - c0, 1),
                       val_loss=round(result.final_val, 4),
                       tokens_per_s=round(result.tokens_per_s))
    what = (f"{cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} wide, block {cfg.block_size}, "
            f"batch {cfg.batch_size}, AdamW, {result.steps} steps in {seconds:.0f} s")
    if not math.isfinite(result.final_val):
        raise CheckFailed(f"the validation loss is {result.final_val} ({what})",
                          hint="look for a division by zero or a log of 0 (softmax of all -inf?)")
    if result.final_val < LEAK_FLOOR and not ctx.fast:
        raise CheckFailed(
            f"val loss {result.final_val:.3f} is impossibly low for {result.steps} steps of this "
            "model: it must see the characters it predicts (future leakage)",
            expected=f"correct models stay well above {LEAK_FLOOR} with this budget",
            got=f"{result.final_val:.4f}",
            hint="position t may only read tokens 0..t: check the causal mask (torch.tril, "
                 "diagonal 0) on the path training uses, in every head")
    if not result.final_val <= bar:
        hint = "if the other criteria pass, is a residual connection or a layer norm missing?"
        if result.stop_reason.startswith("time budget"):
            hint = (f"training stopped at the {cfg.time_budget_s:.0f} s CPU budget after "
                    f"{result.steps} of {cfg.max_steps} steps: is the model very slow?")
        raise CheckFailed(f"the validation loss did not get below {bar} ({what})",
                          expected=f"val loss <= {bar} on the full val split",
                          got=f"{result.final_val:.4f}", hint=hint)
    return f"val loss {result.final_val:.4f} <= {bar} ({what})"
