"""Week 2 lab: give your week-1 GPT a KV cache. Fill in every TODO, then run

    z2v check kv-cache .                   # each criterion, pass or fail, and why
    z2v profile kv --model learner         # cache bytes, memory and time per token vs context

This file is the week-1 reference GPT with the cache parts left out. You may instead paste your
own week-1 model.py here and add the cache to it: the checks only use the interface below.

    cache = KVCache(config)                      # empty: len(cache) == 0
    logits, loss = model(idx, kv_cache=cache)
        idx: (B, T_new): only the tokens that are NOT in the cache yet (the whole prompt the
             first time, then one token per step). They sit at positions
             len(cache) .. len(cache) + T_new - 1, and the call appends their keys and values,
             so afterwards len(cache) == old length + T_new.
        Without kv_cache the model works exactly as in week 1.
    cache.k[layer], cache.v[layer]: (B, n_head, len(cache), head_size) tensors
    model.generate(idx, max_new_tokens, temperature=1.0, top_k=None, use_cache=True)
        use_cache=True: one forward pass over the prompt (prefill), then one pass per new token
        over that token alone (decode). use_cache=False: the week-1 loop. Same tokens either way.

Positions come from a learned table with block_size rows, so a cached generation can hold at
most block_size tokens in all: when prompt + new tokens would not fit, fall back to the
uncached loop (the checks generate past block_size and compare with that sliding window).
"""

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
        self.k = [None] * config.n_layer
        self.v = [None] * config.n_layer

    def seq_len(self, layer: int = 0) -> int:
        """How many positions `layer` holds."""
        # TODO: 0 while empty, else the length of the time dimension of self.k[layer]
        raise NotImplementedError("TODO: KVCache.seq_len")

    def __len__(self) -> int:
        return self.seq_len(0)

    def update(self, layer, k, v):
        """Append this step's k and v (B, nh, T_new, hs) for `layer`; return all keys and
        values so far, (B, nh, len + T_new, hs) each."""
        # TODO: the first time store them (tip: a copy, k.clone(): k is a view into the fused
        # q/k/v activation, and keeping a view keeps all of it alive); later torch.cat along
        # the time dimension (dim=2).
        raise NotImplementedError("TODO: KVCache.update")


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.layer = layer  # which slot of the cache is ours
        self.n_head, self.n_embd = config.n_head, config.n_embd
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        mask = torch.tril(torch.ones(config.block_size, config.block_size))
        self.register_buffer("mask", mask.view(1, 1, config.block_size, config.block_size),
                             persistent=False)

    def forward(self, x, kv_cache=None):
        B, T, C = x.size()
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        past = 0  # positions already in the cache before this call
        # TODO: with a cache, past = how many positions this layer has cached, then replace
        # k and v by everything cached so far plus the new ones (kv_cache.update).
        S = k.size(2)  # number of keys
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, S)
        # TODO: the queries of this call sit at positions past .. past + T - 1, the keys at
        # 0 .. S - 1: slice the mask so query i sees keys 0 .. past + i.
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
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

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x, kv_cache=None):
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
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None, kv_cache=None):
        B, T = idx.size()
        past = 0
        # TODO: with a cache, the new tokens start at position len(kv_cache), not 0
        assert past + T <= self.config.block_size, f"position {past + T} > block_size"
        pos = torch.arange(past, past + T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x, kv_cache)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))
        return logits, loss

    @staticmethod
    def _sample(logits, temperature, top_k):
        logits = logits / max(temperature, 1e-8)
        if top_k is not None:
            v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
            logits[logits < v[:, [-1]]] = -float("inf")
        return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, use_cache=True):
        """Append max_new_tokens sampled tokens to idx (B, T); returns (B, T + max_new_tokens)."""
        # TODO: when use_cache and everything fits in block_size: make a KVCache, run the
        # prompt through the model once (prefill), then feed only each new token (decode).
        for _ in range(max_new_tokens):  # the week-1 loop: the whole prefix every step
            logits, _ = self(idx[:, -self.config.block_size:])
            idx = torch.cat((idx, self._sample(logits[:, -1, :], temperature, top_k)), dim=1)
        return idx
