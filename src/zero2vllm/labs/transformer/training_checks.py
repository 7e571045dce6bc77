"""The transformer lab's training criteria: memorise one batch, then train with the check
recipe and judge the full-split val loss against the bar and the leak floor."""

from __future__ import annotations

import math
import time

from zero2vllm.labs.framework import CheckFailed
from zero2vllm.labs.transformer.harness import (
    VOCAB, build, trainer,
)

# from the measured spread of correct designs under the check recipe (docs/labs.md): above
# the worst with a margin, below the mistakes only training can catch
CHECK_BAR = 2.45
LEAK_FLOOR = 1.8  # no correct model gets near this in the check's 400 steps: it reads the future


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
