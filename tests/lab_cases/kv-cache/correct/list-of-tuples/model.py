"""Karpathy-style: a list of Head modules, a hand-written softmax, and the cache as a list of
(k, v) tuples, one per layer."""

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
    def __init__(self, config):
        self.pairs = [None for _ in range(config.n_layer)]

    def __len__(self):
        return 0 if self.pairs[0] is None else self.pairs[0][0].shape[2]

    @property
    def k(self):
        return [p[0] if p else None for p in self.pairs]

    @property
    def v(self):
        return [p[1] if p else None for p in self.pairs]

    def add(self, layer, k, v):
        if self.pairs[layer] is not None:
            k = torch.cat((self.pairs[layer][0], k), dim=2)
            v = torch.cat((self.pairs[layer][1], v), dim=2)
        else:
            k, v = k.contiguous(), v.contiguous()  # stacked per head: already our own tensors
        self.pairs[layer] = (k, v)
        return k, v


class Head(nn.Module):
    def __init__(self, n_embd, head_size):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)


class MultiHead(nn.Module):
    def __init__(self, config, layer):
        super().__init__()
        self.layer = layer
        self.hs = config.n_embd // config.n_head
        self.heads = nn.ModuleList([Head(config.n_embd, self.hs) for _ in range(config.n_head)])
        self.proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x, cache=None):
        B, T, C = x.shape
        q = torch.stack([h.query(x) for h in self.heads], dim=1)  # (B, nh, T, hs)
        k = torch.stack([h.key(x) for h in self.heads], dim=1)
        v = torch.stack([h.value(x) for h in self.heads], dim=1)
        past = 0
        if cache is not None:
            past = 0 if cache.pairs[self.layer] is None else cache.pairs[self.layer][0].shape[2]
            k, v = cache.add(self.layer, k, v)
        S = k.shape[2]
        w = q @ k.transpose(-2, -1) / math.sqrt(self.hs)
        allowed = torch.ones(T, S, dtype=torch.bool).tril(diagonal=past)
        w = w.masked_fill(~allowed, float("-inf"))
        w = torch.exp(w - w.max(dim=-1, keepdim=True).values)
        w = w / w.sum(dim=-1, keepdim=True)
        out = (w @ v).permute(0, 2, 1, 3).reshape(B, T, C)
        return self.proj(out)


class Block(nn.Module):
    def __init__(self, config, layer):
        super().__init__()
        self.sa = MultiHead(config, layer)
        self.ffwd = nn.Sequential(nn.Linear(config.n_embd, 4 * config.n_embd), nn.GELU(),
                                  nn.Linear(4 * config.n_embd, config.n_embd))
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)

    def forward(self, x, cache=None):
        x = x + self.sa(self.ln1(x), cache)
        return x + self.ffwd(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.token_embedding_table = nn.Embedding(config.vocab_size, config.n_embd)
        self.position_embedding_table = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)

    def forward(self, idx, targets=None, kv_cache=None):
        B, T = idx.shape
        offset = 0 if kv_cache is None else len(kv_cache)
        x = self.token_embedding_table(idx) + self.position_embedding_table(
            torch.arange(offset, offset + T))
        for block in self.blocks:
            x = block(x, kv_cache)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(B * T, -1), targets.view(B * T))

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, use_cache=True):
        cache = None
        if use_cache and idx.shape[1] + max_new_tokens <= self.config.block_size:
            cache = KVCache(self.config)
        feed = idx
        for _ in range(max_new_tokens):
            if cache is None:
                feed = idx[:, -self.config.block_size:]
            logits, _ = self(feed, kv_cache=cache)
            logits = logits[:, -1, :] / max(temperature, 1e-8)
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("Inf")
            probs = F.softmax(logits, dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1)
            idx = torch.cat((idx, idx_next), dim=1)
            feed = idx_next
        return idx
