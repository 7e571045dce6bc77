"""Week 1 lab: your character-level GPT. Fill in every TODO, then run

    z2v check transformer .        # each criterion, pass or fail, and why
    z2v lab run transformer --code .   # train it on tiny Shakespeare and read what it writes

The interface the checks use (keep these names and signatures):

    GPTConfig(vocab_size, block_size, n_layer, n_head, n_embd, dropout)
    model = GPT(config)                      # a torch.nn.Module
    logits, loss = model(idx, targets=None)
        idx:     (B, T) int64 token ids, T <= block_size
        targets: (B, T) the token that FOLLOWS each position of idx (the trainer already
                 shifted them: targets[:, t] == the token after idx[:, t]), or None
        logits:  (B, T, vocab_size), one row of scores per position
        loss:    the mean cross-entropy of logits[:, t] against targets[:, t] (a scalar
                 tensor), or None when targets is None
    out = model.generate(idx, max_new_tokens, temperature=1.0, top_k=None)
        out:     (B, T + max_new_tokens): idx followed by the sampled tokens

Shapes below: B batch, T time (sequence length), C = n_embd channels, nh = n_head heads,
hs = C // nh channels per head.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 65  # tiny Shakespeare has 65 distinct characters
    block_size: int = 64  # the longest context the model sees
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0


class CausalSelfAttention(nn.Module):
    """Multi-head masked self-attention: each position mixes the values of itself and the
    positions before it, weighted by how well its query matches their keys."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        # TODO: a Linear that makes q, k and v for all heads at once (n_embd -> 3 * n_embd),
        #       an output Linear (n_embd -> n_embd), and dropout for the weights and the output.
        # TODO: a causal mask, torch.tril(torch.ones(block_size, block_size)), stored with
        #       self.register_buffer so it moves with the model but is not trained.

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        # TODO 1: q, k, v, each (B, T, C).
        # TODO 2: split the heads: (B, T, C) -> (B, T, nh, hs) -> (B, nh, T, hs).
        # TODO 3: scores = q @ k^T / sqrt(hs)                               -> (B, nh, T, T)
        #         hide the future: where mask[:T, :T] == 0, put -inf
        #         softmax over the keys (the last dimension), then dropout
        # TODO 4: y = weights @ v -> (B, nh, T, hs); heads back side by side -> (B, T, C);
        #         the output Linear and dropout.
        raise NotImplementedError("TODO: CausalSelfAttention.forward")


class MLP(nn.Module):
    """Per-position computation: n_embd -> 4 * n_embd -> GELU -> n_embd, then dropout."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        # TODO: the two Linear layers, the GELU and the dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("TODO: MLP.forward")


class Block(nn.Module):
    """One transformer block: x + attention(layernorm(x)), then x + mlp(layernorm(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        # TODO: two LayerNorms, a CausalSelfAttention and an MLP

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("TODO: Block.forward (remember the residual connections)")


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        # TODO: token embeddings (vocab_size x n_embd), position embeddings (block_size x n_embd),
        #       dropout, n_layer Blocks in an nn.ModuleList, a final LayerNorm, and lm_head
        #       (n_embd -> vocab_size, no bias).
        # TODO: initialise every Linear and Embedding weight from a normal distribution with
        #       std 0.02 and every bias to 0 (self.apply(fn) calls fn on each submodule):
        #       the first predictions are then nearly uniform and the loss starts near ln(65).
        raise NotImplementedError("TODO: GPT.__init__")

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        B, T = idx.size()
        # TODO: token embedding + position embedding (positions 0..T-1), dropout,
        #       the blocks, the final LayerNorm, lm_head -> logits (B, T, vocab_size).
        # TODO: if targets is given, loss = F.cross_entropy over all B*T positions
        #       (reshape logits to (B*T, vocab_size) and targets to (B*T,)); else loss = None.
        raise NotImplementedError("TODO: GPT.forward")

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None) -> torch.Tensor:
        # TODO: max_new_tokens times:
        #   crop idx to its last block_size tokens (the model knows no more positions),
        #   logits of the LAST position, divided by temperature,
        #   if top_k: set every logit below the k-th largest to -inf,
        #   softmax -> torch.multinomial(probs, 1) -> append to idx.
        raise NotImplementedError("TODO: GPT.generate")
