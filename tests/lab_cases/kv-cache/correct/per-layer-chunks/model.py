"""One cache object per layer that keeps the chunks it was given and joins them when read;
attention through einsum with a fused qkv projection."""

import math
from dataclasses import dataclass

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


class LayerKV:
    def __init__(self):
        self.k_chunks, self.v_chunks = [], []

    @property
    def length(self):
        return sum(c.shape[2] for c in self.k_chunks)

    def append(self, k, v):
        self.k_chunks.append(k.detach().clone())
        self.v_chunks.append(v.detach().clone())

    def keys(self):
        return torch.cat(self.k_chunks, dim=2) if self.k_chunks else None

    def values(self):
        return torch.cat(self.v_chunks, dim=2) if self.v_chunks else None


class KVCache:
    def __init__(self, config):
        self.layers = [LayerKV() for _ in range(config.n_layer)]

    def __len__(self):
        return self.layers[0].length

    @property
    def k(self):
        return [layer.keys() for layer in self.layers]

    @property
    def v(self):
        return [layer.values() for layer in self.layers]


class SelfAttention(nn.Module):
    def __init__(self, config, layer):
        super().__init__()
        self.layer, self.n_head = layer, config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.out = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x, kv_cache=None):
        B, T, C = x.shape
        H = self.n_head
        q, k, v = self.qkv(x).view(B, T, 3, H, C // H).permute(2, 0, 3, 1, 4)
        past = 0
        if kv_cache is not None:
            slot = kv_cache.layers[self.layer]
            past = slot.length
            slot.append(k, v)
            k, v = slot.keys(), slot.values()
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(C // H)
        q_pos = past + torch.arange(T)[:, None]
        k_pos = torch.arange(k.shape[2])[None, :]
        scores = scores.masked_fill(k_pos > q_pos, float("-inf"))
        y = torch.einsum("bhqk,bhkd->bhqd", F.softmax(scores, dim=-1), v)
        return self.out(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, config, layer):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(config.n_embd), nn.LayerNorm(config.n_embd)
        self.attn = SelfAttention(config, layer)
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x, kv_cache=None):
        x = x + self.attn(self.ln1(x), kv_cache)
        return x + self.proj(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.h = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def forward(self, idx, targets=None, kv_cache=None):
        past = len(kv_cache) if kv_cache is not None else 0
        x = self.wte(idx) + self.wpe(torch.arange(past, past + idx.shape[1]))
        for block in self.h:
            x = block(x, kv_cache)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, use_cache=True):
        def sample(logits):
            logits = logits / max(temperature, 1e-8)
            if top_k is not None:
                top = torch.topk(logits, min(top_k, logits.shape[-1]))
                logits = torch.full_like(logits, float("-inf")).scatter(-1, top.indices, top.values)
            return torch.multinomial(F.softmax(logits, -1), 1)

        fits = idx.shape[1] + max_new_tokens <= self.config.block_size
        cache = KVCache(self.config) if (use_cache and fits) else None
        logits = None
        for _ in range(max_new_tokens):
            if cache is None:
                logits, _ = self(idx[:, -self.config.block_size:])
            elif logits is None:
                logits, _ = self(idx, kv_cache=cache)
            else:
                logits, _ = self(idx[:, -1:], kv_cache=cache)
            idx = torch.cat((idx, sample(logits[:, -1])), dim=1)
        return idx
