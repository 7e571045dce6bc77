"""The cache handled functionally: attention takes the layer's past (k, v) and returns its
present; GPT.forward writes the presents back into the cache object. Post-LN blocks."""

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


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
        self.k = [None] * config.n_layer
        self.v = [None] * config.n_layer

    def __len__(self):
        return 0 if self.k[0] is None else self.k[0].shape[2]


def attend(q, k, v, past):
    T, S = q.shape[-2], k.shape[-2]
    w = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    keep = torch.tril(torch.ones(T, S, dtype=torch.bool), diagonal=S - T)
    return F.softmax(w.masked_fill(~keep, float("-inf")), dim=-1) @ v


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.h = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x, past=None):
        B, T, C = x.shape
        q, k, v = (t.reshape(B, T, self.h, -1).transpose(1, 2) for t in self.c_attn(x).chunk(3, -1))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        else:
            k, v = k.contiguous().clone(), v.contiguous().clone()
        y = attend(q, k, v, past)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C)), (k, v)


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attn, self.ln1 = Attention(config), nn.LayerNorm(config.n_embd)
        self.mlp = nn.Sequential(nn.Linear(config.n_embd, 4 * config.n_embd), nn.GELU(),
                                 nn.Linear(4 * config.n_embd, config.n_embd))
        self.ln2 = nn.LayerNorm(config.n_embd)

    def forward(self, x, past=None):
        a, present = self.attn(x, past)
        x = self.ln1(x + a)
        return self.ln2(x + self.mlp(x)), present


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def forward(self, idx, targets=None, kv_cache=None):
        past_len = len(kv_cache) if kv_cache is not None else 0
        x = self.wte(idx) + self.wpe.weight[past_len:past_len + idx.shape[1]]
        for i, block in enumerate(self.blocks):
            past = None if kv_cache is None or kv_cache.k[i] is None else (kv_cache.k[i], kv_cache.v[i])
            x, present = block(x, past)
            if kv_cache is not None:
                kv_cache.k[i], kv_cache.v[i] = present
        logits = self.head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, use_cache=True):
        bs = self.config.block_size
        cache, fresh = (KVCache(self.config), idx) if use_cache else (None, None)
        for step in range(max_new_tokens):
            if cache is not None and len(cache) + fresh.shape[1] <= bs:
                logits, _ = self(fresh, kv_cache=cache)
            else:
                logits, _ = self(idx[:, -bs:])
            logits = logits[:, -1] / max(temperature, 1e-8)
            if top_k is not None:
                kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
                logits[logits < kth] = float("-inf")
            fresh = torch.multinomial(F.softmax(logits, -1), 1)
            idx = torch.cat((idx, fresh), 1)
            if cache is not None and len(cache) + 1 > bs:
                cache = None  # past block_size: the sliding window from here on
        return idx
