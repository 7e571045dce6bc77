"""How the transformer checks build and call the learner's model: small models from the
learner's own GPTConfig/GPT, random tokens, forward calls that accept both logits conventions,
and the perturbation experiments several criteria share."""

from __future__ import annotations

import torch

from zero2vllm.labs.framework import CheckFailed, CheckWarning  # noqa: F401 - for the checks

VOCAB = 65
SMALL = dict(vocab_size=VOCAB, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0)


def trainer():
    from zero2vllm.labs.transformer.reference import train

    return train


def build(ctx, **overrides):
    """The learner's model from the learner's config, in eval mode (no dropout)."""
    if not hasattr(ctx.module, "GPT"):
        raise CheckFailed("model.py has no class GPT",
                          hint="keep the names of the scaffold: GPTConfig and GPT")
    torch.manual_seed(overrides.pop("seed", 0))
    fields = {**SMALL, **overrides}
    try:
        model = trainer().build_model(ctx.module, **fields)
    except TypeError as exc:
        raise CheckFailed(f"could not build GPT(GPTConfig(...)): {exc}",
                          expected=f"GPTConfig accepting {', '.join(fields)}",
                          hint="keep the GPTConfig fields of the scaffold") from None
    if not isinstance(model, torch.nn.Module):
        raise CheckFailed("GPT(config) is not a torch.nn.Module", got=type(model).__name__)
    return model.eval()


def randomize(model, std: float = 0.3, seed: int = 0) -> None:
    """Large random weights: logits far from uniform, so mistakes show as big differences."""
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
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, shape, generator=g)


def logits_change(model, T: int, seed: int):
    """diff[j, t]: how much the logits at position t move when only token j changes (row j of
    the batch changes token j; row 0 is the original), relative to the logits' size."""
    base = tokens((1, T), seed)
    batch = base.repeat(T, 1)
    for j in range(1, T):
        batch[j, j] = (batch[j, j] + 1 + j) % VOCAB
    changed0 = base.clone()
    changed0[0, 0] = (changed0[0, 0] + 7) % VOCAB
    with torch.no_grad():
        logits, _ = full_logits(model, torch.cat([batch, changed0]))
    diff = (logits[:T] - logits[:1]).abs().amax(dim=-1)  # (changed token j, position t)
    diff[0] = (logits[T] - logits[0]).abs().amax(dim=-1)  # token 0 changed
    scale = float(logits[:1].abs().max()) + 1e-6
    return diff / scale


def leaks(ctx, n_layer: int, seed: int = 4):
    """(later token j, earlier position t) pairs where changing token j changed logits at t,
    and how many positions t > 0 reacted to token 0."""
    model = build(ctx, n_layer=n_layer)
    randomize(model)
    T = SMALL["block_size"]
    diff = logits_change(model, T, seed)
    found = [(j, t) for j in range(1, T) for t in range(j) if float(diff[j, t]) > 1e-5]
    reads_past = sum(1 for t in range(1, T) if float(diff[0, t]) > 1e-5)
    return found, reads_past


def probe_forward(ctx, seed: int = 5, randomized: bool = True, T: int = 11, **fields):
    """One forward pass of a small model under the probe; T = 11 matches no other size."""
    import torch

    from zero2vllm.labs.transformer.probes import Probe

    model = build(ctx, **fields)
    if randomized:
        randomize(model, seed=seed)
    idx = tokens((2, T), seed)
    probe = Probe(T, fields.get("n_embd", SMALL["n_embd"]), VOCAB)
    with torch.no_grad(), probe:
        logits, _ = full_logits(model, idx)
    return probe, model, logits
