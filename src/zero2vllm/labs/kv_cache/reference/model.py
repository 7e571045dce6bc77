"""The week-1 character-level GPT with a KV cache: the kv-cache lab's reference solution.

Without a cache, every new token runs the model over the whole prefix again: token t costs
O(t) work and the whole generation O(T^2). But the keys and values of the prefix never change
(a causal model never lets a position see the future), so we keep them: each attention layer
stores K and V of every position it has seen, and a new token only computes its own q, k, v
and attends over the stored keys. The price is memory, and it grows linearly with the context:

    cache bytes = 2 (K and V) x n_layer x n_head x head_size x bytes per element x T x B

Interface (what `z2v check kv-cache` uses):

    cache = KVCache(config)                  # empty; len(cache) == 0
    logits, loss = model(idx, kv_cache=cache)
        idx: (B, T_new) the tokens that are NOT in the cache yet (the whole prompt at first,
             then one token per step); they sit at positions len(cache) .. len(cache)+T_new-1.
        The call appends their keys and values to the cache, so afterwards
        len(cache) == old length + T_new.
    cache.k[layer], cache.v[layer]: (B, n_head, len(cache), head_size)
    model.generate(idx, max_new_tokens, temperature=1.0, top_k=None, use_cache=True)

Positions come from a learned table of block_size rows, so a cached generation can hold at
most block_size tokens in all; `generate` falls back to the uncached sliding window after that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 65
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0


class KVCache:
    """Keys and values of every position seen so far, one (k, v) pair per layer."""

    def __init__(self, config: GPTConfig):
        self.k: list[torch.Tensor | None] = [None] * config.n_layer
        self.v: list[torch.Tensor | None] = [None] * config.n_layer

    def seq_len(self, layer: int = 0) -> int:
        """How many positions layer `layer` holds (all layers agree between forward calls)."""
        return 0 if self.k[layer] is None else self.k[layer].size(2)

    def __len__(self) -> int:
        return self.seq_len(0)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's k, v (B, nh, T_new, hs); return all keys and values so far."""
        if self.k[layer] is None:
            # Our own copy: k and v are views into the fused q/k/v activation, and keeping a
            # view would keep all of it (q too) alive, 1.5x the memory the cache needs.
            self.k[layer], self.v[layer] = k.clone(), v.clone()
        else:
            self.k[layer] = torch.cat([self.k[layer], k], dim=2)
            self.v[layer] = torch.cat([self.v[layer], v], dim=2)
        return self.k[layer], self.v[layer]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.layer = layer
        self.n_head, self.n_embd = config.n_head, config.n_embd
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        mask = torch.tril(torch.ones(config.block_size, config.block_size))
        self.register_buffer("mask", mask.view(1, 1, config.block_size, config.block_size),
                             persistent=False)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.size()
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        past = 0
        if kv_cache is not None:
            past = kv_cache.seq_len(self.layer)
            k, v = kv_cache.update(self.layer, k, v)  # now (B, nh, past + T, hs)
        S = k.size(2)  # how many keys: the cached ones plus the new ones
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, S)
        # query i of this step sits at position past + i and may see keys 0 .. past + i
        att = att.masked_fill(self.mask[:, :, past:past + T, :S] == 0, float("-inf"))
        att = self.attn_dropout(F.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), kv_cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                kv_cache: KVCache | None = None):
        B, T = idx.size()
        past = len(kv_cache) if kv_cache is not None else 0
        assert past + T <= self.config.block_size, \
            f"position {past + T} is past block_size {self.config.block_size}"
        pos = torch.arange(past, past + T, device=idx.device)  # the new tokens' positions
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x, kv_cache)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))
        return logits, loss

    @staticmethod
    def _sample(logits: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
        logits = logits / max(temperature, 1e-8)
        if top_k is not None:
            v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
            logits[logits < v[:, [-1]]] = -float("inf")
        return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, use_cache: bool = True) -> torch.Tensor:
        """Append max_new_tokens sampled tokens to idx (B, T); returns (B, T + max_new_tokens)."""
        if not use_cache or idx.size(1) + max_new_tokens > self.config.block_size:
            for _ in range(max_new_tokens):  # the week-1 way: the whole (cropped) prefix each step
                logits, _ = self(idx[:, -self.config.block_size:])
                idx = torch.cat((idx, self._sample(logits[:, -1, :], temperature, top_k)), dim=1)
            return idx
        cache = KVCache(self.config)
        logits, _ = self(idx, kv_cache=cache)  # prefill: the whole prompt in one pass
        for step in range(max_new_tokens):
            idx_next = self._sample(logits[:, -1, :], temperature, top_k)
            idx = torch.cat((idx, idx_next), dim=1)
            if step < max_new_tokens - 1:
                logits, _ = self(idx_next, kv_cache=cache)  # decode: only the new token
        return idx
