"""The transformer lab's criteria, run on the learner's model.py by zero2vllm.labs.runner.

Each criterion builds small models from the learner's GPTConfig/GPT and looks at behaviour
(shapes, losses, which logits change when which tokens change), so any correct design passes:
one fused q/k/v matrix or a list of Head modules, explicit softmax or
F.scaled_dot_product_attention. To name a mistake rather than only notice it, a few criteria
also watch which torch functions the model calls (softmax over which dimension, how many
attention maps) through a TorchFunctionMode.
"""

from __future__ import annotations

import math
import os
import time

from zero2vllm.labs.framework import CheckFailed, criterion

VOCAB = 65
SMALL = dict(vocab_size=VOCAB, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0)


def setup(ctx) -> None:
    import torch

    # leave a core free: on a busy 2-core machine two spinning OpenMP threads run ~10x slower
    torch.set_num_threads(max(1, min(4, (os.cpu_count() or 2) - 1)))


# -- helpers ------------------------------------------------------------------------------------
def _train():
    from zero2vllm.labs.transformer.reference import train

    return train


def build(ctx, **overrides):
    """The learner's model from the learner's config, in eval mode (no dropout)."""
    import torch

    if not hasattr(ctx.module, "GPT"):
        raise CheckFailed("model.py has no class GPT",
                          hint="keep the names of the scaffold: GPTConfig and GPT")
    torch.manual_seed(overrides.pop("seed", 0))
    fields = {**SMALL, **overrides}
    try:
        model = _train().build_model(ctx.module, **fields)
    except TypeError as exc:
        raise CheckFailed(f"could not build GPT(GPTConfig(...)): {exc}",
                          expected=f"GPTConfig accepting {', '.join(fields)}",
                          hint="keep the GPTConfig fields of the scaffold") from None
    if not isinstance(model, torch.nn.Module):
        raise CheckFailed("GPT(config) is not a torch.nn.Module", got=type(model).__name__)
    return model.eval()


def randomize(model, std: float = 0.3, seed: int = 0) -> None:
    """Large random weights: logits far from uniform, so mistakes show as big differences."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


def call(model, idx, targets=None):
    out = model(idx) if targets is None else model(idx, targets)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise CheckFailed("forward must return a pair (logits, loss)",
                          got=f"{type(out).__name__}", hint="return logits, loss")
    return out


def full_logits(model, idx, targets=None):
    """(B, T, V) logits, accepting the (B*T, V) shape the lecture code returns with targets."""
    logits, loss = call(model, idx, targets)
    B, T = idx.shape
    if logits.dim() == 2 and logits.shape[0] == B * T:
        logits = logits.view(B, T, -1)
    return logits, loss


def tokens(shape, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, shape, generator=g)


def attention_recorder():
    """A TorchFunctionMode that notes softmax calls on square (T, T) score tensors and
    scaled_dot_product_attention calls: how many attention maps, normalised over which dim."""
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    softmaxes = {F.softmax, torch.softmax, torch.Tensor.softmax, F.log_softmax,
                 torch.log_softmax, torch.Tensor.log_softmax}

    class Recorder(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.maps = 0  # attention maps seen: batch x heads x layers
            self.dims: list[str] = []  # "keys" / "queries" / "other" per softmax call
            self.head_sizes: set[int] = set()

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in softmaxes and args and isinstance(args[0], torch.Tensor):
                x = args[0]
                dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
                if x.dim() >= 2 and x.shape[-1] == x.shape[-2] and isinstance(dim, int):
                    d = dim % x.dim()
                    self.maps += x.numel() // (x.shape[-1] * x.shape[-2])
                    self.dims.append("keys" if d == x.dim() - 1 else
                                     "queries" if d == x.dim() - 2 else "other")
            elif func is F.scaled_dot_product_attention and args:
                q = args[0]
                self.maps += q.numel() // (q.shape[-1] * q.shape[-2])
                self.dims.append("keys")
                self.head_sizes.add(int(q.shape[-1]))
            return func(*args, **kwargs)

    return Recorder()


# -- criteria -----------------------------------------------------------------------------------
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


@criterion("initial loss near ln(vocab)")
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


@criterion("loss on next-token targets")
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
    ]
    for value, message, hint in mistakes:
        if math.isclose(loss, value, rel_tol=1e-3, abs_tol=1e-4):
            raise CheckFailed(f"wrongly shifted or wrongly reduced loss: {message}",
                              expected=f"{right:.4f}", got=f"{loss:.4f}", hint=hint)
    raise CheckFailed("the loss is not the mean cross-entropy of logits[:, t] against targets[:, t]",
                      expected=f"{right:.4f}", got=f"{loss:.4f}",
                      hint="F.cross_entropy(logits.view(B*T, V), targets.view(B*T))")


def _leaks(ctx, n_layer: int):
    """(later token j, earlier position t) pairs where changing token j changed logits at t,
    and the attention recorder of that forward pass."""
    import torch

    model = build(ctx, n_layer=n_layer)
    randomize(model)
    T = SMALL["block_size"]
    base = tokens((1, T), 4)
    batch = base.repeat(T, 1)  # row j changes only token j (j = 1..T-1); row 0 is the original
    for j in range(1, T):
        batch[j, j] = (batch[j, j] + 1 + j) % VOCAB
    recorder = attention_recorder()
    with torch.no_grad(), recorder:
        logits, _ = full_logits(model, batch)
    diff = (logits - logits[:1]).abs().amax(dim=-1)  # (changed token, position)
    scale = float(logits[:1].abs().max()) + 1e-6
    leaks = [(j, t) for j in range(1, T) for t in range(j) if float(diff[j, t]) > 1e-5 * scale]
    return leaks, recorder


@criterion("causality")
def causality(ctx):
    T = SMALL["block_size"]
    pairs = T * (T - 1) // 2
    leaks, recorder = _leaks(ctx, SMALL["n_layer"])
    ctx.metrics["causal_leaks"] = len(leaks)
    wrong_dim = [d for d in recorder.dims if d != "keys"]
    if wrong_dim:
        raise CheckFailed(
            "softmax over the wrong dimension: the attention weights are normalised over the "
            "queries (dim -2), so each position mixes in scores computed for later positions",
            expected="softmax(att, dim=-1): each query's weights over the keys sum to 1",
            got=f"softmax over {wrong_dim[0]} ({len(leaks)} earlier logits changed with later tokens)",
            hint="att = F.softmax(att, dim=-1)",
        )
    if not leaks:
        return f"none of the {pairs} earlier positions reacted to a later token"
    # one layer shows the mask itself (in deeper models leaks compound across layers)
    one_layer, _ = _leaks(ctx, 1)
    first = min(leaks, key=lambda p: (p[1], p[0]))
    if one_layer and all(j == t + 1 for j, t in one_layer):
        raise CheckFailed(
            "the causal mask lets each position see one step ahead: logits at position t "
            "change when token t + 1 changes",
            expected="position t attends to positions 0..t only",
            got=f"in a 1-layer model, {len(one_layer)} positions read the next token",
            hint="mask with torch.tril(torch.ones(T, T)) (diagonal 0): keep s <= t, fill the "
                 "rest with -inf before the softmax",
        )
    if len(one_layer) == pairs:
        raise CheckFailed(
            "attention without a causal mask: every position sees the whole sequence, "
            "including the tokens it is meant to predict",
            expected="logits at position t depend only on tokens 0..t",
            got=f"all {pairs} (position, later token) pairs leak, e.g. position {first[1]} "
                f"changes with token {first[0]}",
            hint="att = att.masked_fill(tril[:T, :T] == 0, float('-inf')) before the softmax "
                 "(or F.scaled_dot_product_attention(..., is_causal=True))",
        )
    raise CheckFailed(
        "not causal: some logits change when a later token changes",
        expected="logits at position t depend only on tokens 0..t",
        got=f"{len(leaks)} leaks, e.g. position {first[1]} changes with token {first[0]}",
        hint="check the mask (torch.tril, sliced [:T, :T]) and that it is applied in every "
             "head and layer, before the softmax",
    )


@criterion("heads split")
def heads_split(ctx):
    import torch

    n_head = SMALL["n_head"]
    B, T = 2, SMALL["block_size"]
    idx = tokens((B, T), 5)
    model = build(ctx, n_head=n_head)
    randomize(model)
    recorder = attention_recorder()
    with torch.no_grad(), recorder:
        logits, _ = full_logits(model, idx)
    n_layer = SMALL["n_layer"]
    found = recorder.maps / (B * n_layer) if recorder.maps else None
    head_size = SMALL["n_embd"] // n_head
    if found is not None and found != n_head:
        raise CheckFailed(
            f"heads not split: found {found:g} attention map(s) per sequence per layer",
            expected=f"n_head = {n_head} maps, one per head, each over head_size = "
                     f"n_embd // n_head = {head_size} channels",
            got=f"{found:g} map(s) per layer",
            hint="view q, k, v as (B, T, n_head, head_size) and transpose to (B, n_head, T, "
                 "head_size) before q @ k^T, then put the heads back side by side",
        )
    if recorder.head_sizes and recorder.head_sizes != {head_size}:
        raise CheckFailed("scaled_dot_product_attention got the wrong head size",
                          expected=str(head_size), got=str(sorted(recorder.head_sizes)))
    # the same weights with one head must give other results (only possible when the
    # parameters do not depend on n_head, as with one fused q/k/v projection)
    one = build(ctx, n_head=1)
    compared = False
    try:
        one.load_state_dict(model.state_dict())
        compared = True
    except (RuntimeError, KeyError):
        pass
    if compared:
        with torch.no_grad():
            single, _ = full_logits(one, idx)
        if torch.allclose(single, logits, atol=1e-5, rtol=1e-4):
            raise CheckFailed(
                "heads not split: the model gives the same results with n_head = 1",
                expected=f"{n_head} heads attending separately give different logits",
                got="identical logits", hint="split q, k, v into n_head heads of n_embd // n_head")
    if found is None and not compared:
        raise CheckFailed(
            "could not see the attention: no softmax over (T, T) scores and no "
            "F.scaled_dot_product_attention call, and the weights depend on n_head",
            hint="compute attention with F.softmax(att, dim=-1) or "
                 "F.scaled_dot_product_attention so the checks can count the heads")
    how = []
    if found is not None:
        how.append(f"{n_head} attention maps per layer")
    if compared:
        how.append("differs from one head with the same weights")
    return ", ".join(how)


@criterion("overfit one batch")
def overfit(ctx):
    import torch
    import torch.nn.functional as F

    train = _train()
    data = train.load_data()
    g = torch.Generator().manual_seed(0)
    x, y = train.get_batch(data.train, 32, 4, g)
    model = build(ctx, block_size=32, n_layer=2, n_head=4, n_embd=64)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    steps = 150 if not ctx.fast else 100
    first = None
    for _ in range(steps):
        logits = train.logits_of(model, x)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        first = float(loss) if first is None else first
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


@criterion("train on tiny Shakespeare")
def trains(ctx):
    train = _train()
    if ctx.fast:  # the tool's own tests: a quick run, a loose bar
        cfg = train.preset("check", max_steps=120, decay_steps=120, eval_from=120)
        bar = 2.7
    else:
        cfg = train.preset("check")
        bar = CHECK_BAR
    t0 = time.perf_counter()
    result = train.train(cfg, module=ctx.module)
    seconds = time.perf_counter() - t0
    ctx.metrics.update(train_steps=result.steps, train_seconds=round(seconds, 1),
                       val_loss=round(result.final_val, 4),
                       tokens_per_s=round(result.tokens_per_s))
    what = (f"{cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} wide, block {cfg.block_size}, "
            f"batch {cfg.batch_size}, {result.steps} steps in {seconds:.0f} s")
    if not result.final_val <= bar:
        hint = "if the other criteria pass, is dropout or a residual connection missing?"
        if result.stop_reason.startswith("time budget"):
            hint = (f"training stopped at the {cfg.time_budget_s:.0f} s budget after "
                    f"{result.steps} of {cfg.max_steps} steps: is the model very slow?")
        raise CheckFailed(f"the validation loss did not get below {bar} ({what})",
                          expected=f"val loss <= {bar} on the full val split",
                          got=f"{result.final_val:.4f}", hint=hint)
    return f"val loss {result.final_val:.4f} <= {bar} ({what})"


@criterion("generate")
def generate(ctx):
    import torch

    block = SMALL["block_size"]
    model = build(ctx)
    randomize(model, std=0.2)
    if not hasattr(model, "generate"):
        raise CheckFailed("GPT has no generate method",
                          hint="def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None)")
    lengths: list[int] = []
    model.register_forward_pre_hook(lambda m, args, kw: lengths.append(
        int((args[0] if args else kw["idx"]).shape[1])), with_kwargs=True)
    start = tokens((2, 3), 6)
    n_new = block + 5  # longer than the context: only the last block_size tokens fit
    torch.manual_seed(0)
    try:
        with torch.no_grad():
            out = model.generate(start.clone(), n_new, temperature=0.8, top_k=5)
    except (IndexError, RuntimeError, AssertionError) as exc:
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
    if lengths and max(lengths) > block:
        raise CheckFailed("generate fed the model more than block_size tokens",
                          expected=f"at most {block}", got=str(max(lengths)),
                          hint="crop: idx_cond = idx[:, -block_size:]")
    # greedy (top_k=1): the next token is the argmax of the LAST position's logits
    with torch.no_grad():
        logits, _ = full_logits(model, start)
        greedy = model.generate(start.clone(), 1, top_k=1)
    want = logits[:, -1].argmax(-1)
    if not torch.equal(greedy[:, -1], want):
        raise CheckFailed("with top_k=1 the next token is not the most likely one after the prompt",
                          expected=str(want.tolist()), got=str(greedy[:, -1].tolist()),
                          hint="sample from logits[:, -1, :] (the last position), after top-k")
    return f"(2, {3 + n_new}) valid ids, contexts of at most {max(lengths or [0])} tokens"


CHECK_BAR = 2.1  # the reference reaches about 2.0 with the "check" recipe
