"""The transformer lab's `generate` criterion: shape, ids, prompt, the sliding window of the
last block_size tokens step by step, greedy decoding, no dropout while generating."""

from __future__ import annotations

from zero2vllm.labs.framework import CheckFailed
from zero2vllm.labs.transformer.harness import (
    SMALL, VOCAB, build, full_logits, randomize, tokens,
)


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
    # temperature divides the logits: near 0, sampling is the argmax
    cold = []
    for seed in range(4):
        torch.manual_seed(seed)
        with torch.no_grad():
            cold.append(model.generate(start.clone(), 1, temperature=1e-3)[:, -1])
    if not all(torch.equal(c, want[:, 3]) for c in cold):
        raise CheckFailed(
            "temperature 0.001 did not give the most likely token: the temperature is applied "
            "the wrong way (or not at all)",
            expected=f"{want[:, 3].tolist()} every time (logits / temperature -> one-hot)",
            got=str([c.tolist() for c in cold]),
            hint="logits = logits[:, -1, :] / temperature, before top-k and the softmax")
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
