"""The transformer lab's criteria, run on the learner's model.py by zero2vllm.labs.runner.

Each criterion builds small models from the learner's GPTConfig/GPT and judges behaviour, so
any correct design passes (fused or separate q/k/v, a list of Head modules, per-head tensors
with einsum, nn.MultiheadAttention, SDPA or a hand-written softmax, pre- or post-LN): which
logits move when which tokens change, what the attention weights are (probes.py reads them off
the values torch returns, whatever computed them), what the model does in eval mode and past
block_size. The cheap criteria come first; training runs only when they all pass.
"""

from __future__ import annotations

import os

from zero2vllm.labs.framework import criterion
from zero2vllm.labs.transformer import (
    attention_checks, generation_check, model_checks, training_checks,
)
from zero2vllm.labs.transformer.harness import CheckWarning  # noqa: F401 - for callers
from zero2vllm.labs.transformer.training_checks import CHECK_BAR, LEAK_FLOOR  # noqa: F401

SHAPES = ("output shapes",)
EVAL = ("output shapes", "dropout off when not training")  # noise in eval hides all else


def setup(ctx) -> None:
    import torch

    # leave a core free: on a busy 2-core machine two spinning OpenMP threads run ~10x slower
    torch.set_num_threads(max(1, min(4, (os.cpu_count() or 2) - 1)))


# The criteria, in the order they run; each body lives in the module named.

@criterion("output shapes")
def output_shapes(ctx):
    return model_checks.output_shapes(ctx)


@criterion("dropout off when not training", needs=SHAPES)
def dropout_eval(ctx):
    return model_checks.dropout_eval(ctx)


@criterion("initial loss near ln(vocab)", needs=EVAL)
def initial_loss(ctx):
    return model_checks.initial_loss(ctx)


@criterion("loss on next-token targets", needs=EVAL)
def loss_formula(ctx):
    return model_checks.loss_formula(ctx)


@criterion("causality", needs=EVAL)
def causality(ctx):
    return attention_checks.causality(ctx)


@criterion("heads split", needs=EVAL)
def heads_split(ctx):
    return attention_checks.heads_split(ctx)


@criterion("attention scaling", needs=EVAL)
def attention_scaling(ctx):
    return attention_checks.attention_scaling(ctx)


@criterion("position embeddings", needs=EVAL)
def positions(ctx):
    return model_checks.positions(ctx)


@criterion("layer norm", needs=EVAL)
def layer_norm(ctx):
    return model_checks.layer_norm(ctx)


@criterion("residual connections", needs=EVAL)
def residual(ctx):
    return model_checks.residual(ctx)


@criterion("generate", needs=EVAL)
def generate(ctx):
    return generation_check.generate(ctx)


CHEAP = ("output shapes", "dropout off when not training", "initial loss near ln(vocab)",
         "loss on next-token targets", "causality", "heads split", "attention scaling",
         "position embeddings", "layer norm", "residual connections", "generate")


@criterion("overfit one batch", needs=SHAPES)
def overfit(ctx):
    return training_checks.overfit(ctx)


@criterion("train on tiny Shakespeare", needs=CHEAP + ("overfit one batch",))
def trains(ctx):
    return training_checks.trains(ctx)
