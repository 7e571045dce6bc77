"""Hugging Face's DynamicCache shape of API (key_cache / value_cache, update(k, v, layer_idx),
get_seq_length), per-head weight tensors with einsum, tied embeddings, and a prefill in chunks."""

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


class KVCache:
    def __init__(self, config=None):
        self.key_cache: list[torch.Tensor] = []
        self.value_cache: list[torch.Tensor] = []

    def get_seq_length(self, layer_idx=0):
        return self.key_cache[layer_idx].shape[-2] if len(self.key_cache) > layer_idx else 0

    def __len__(self):
        return self.get_seq_length()

    def update(self, key_states, value_states, layer_idx):
        if len(self.key_cache) <= layer_idx:
            self.key_cache.append(key_states.clone())
            self.value_cache.append(value_states.clone())
        else:
            self.key_cache[layer_idx] = torch.cat([self.key_cache[layer_idx], key_states], dim=-2)
            self.value_cache[layer_idx] = torch.cat([self.value_cache[layer_idx], value_states], dim=-2)
        return self.key_cache[layer_idx], self.value_cache[layer_idx]

    k = property(lambda self: self.key_cache)
    v = property(lambda self: self.value_cache)


class Attention(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        C, H = config.n_embd, config.n_head
        self.layer_idx, self.H, self.D = layer_idx, H, C // H
        self.Wq = nn.Parameter(torch.randn(H, C, C // H) * 0.02)
        self.Wk = nn.Parameter(torch.randn(H, C, C // H) * 0.02)
        self.Wv = nn.Parameter(torch.randn(H, C, C // H) * 0.02)
        self.Wo = nn.Parameter(torch.randn(H, C // H, C) * 0.02)

    def forward(self, x, past_key_values=None):
        q = torch.einsum("btc,hcd->bhtd", x, self.Wq)
        k = torch.einsum("btc,hcd->bhtd", x, self.Wk)
        v = torch.einsum("btc,hcd->bhtd", x, self.Wv)
        start = 0
        if past_key_values is not None:
            start = past_key_values.get_seq_length(self.layer_idx)
            k, v = past_key_values.update(k, v, self.layer_idx)
        T, S = q.shape[2], k.shape[2]
        s = torch.einsum("bhtd,bhsd->bhts", q, k) / math.sqrt(self.D)
        mask = torch.arange(S)[None, :] > (start + torch.arange(T))[:, None]
        p = s.masked_fill(mask, float("-inf")).softmax(-1)
        return torch.einsum("bhts,bhsd,hdc->btc", p, v, self.Wo)


class Block(nn.Module):
    def __init__(self, config, i):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(config.n_embd), nn.LayerNorm(config.n_embd)
        self.attn = Attention(config, i)
        self.mlp = nn.Sequential(nn.Linear(config.n_embd, 4 * config.n_embd), nn.GELU(),
                                 nn.Linear(4 * config.n_embd, config.n_embd))

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.n_embd)
        self.positions = nn.Parameter(torch.randn(config.block_size, config.n_embd) * 0.02)
        self.layers = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.final_norm = nn.LayerNorm(config.n_embd)

    def forward(self, idx, targets=None, kv_cache=None):
        start = kv_cache.get_seq_length() if kv_cache is not None else 0
        x = self.embed(idx) + self.positions[start:start + idx.shape[1]]
        for layer in self.layers:
            x = layer(x, kv_cache)
        logits = self.final_norm(x) @ self.embed.weight.T  # tied head
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, use_cache=True):
        bs = self.config.block_size
        cache = KVCache() if use_cache and idx.shape[1] + max_new_tokens <= bs else None
        if cache is not None:
            for s in range(0, idx.shape[1], 8):  # prefill in chunks of 8
                logits, _ = self(idx[:, s:s + 8], kv_cache=cache)
        for i in range(max_new_tokens):
            if cache is None:
                logits, _ = self(idx[:, -bs:])
            elif i > 0:
                logits, _ = self(idx[:, -1:], kv_cache=cache)
            last = logits[:, -1] / max(temperature, 1e-8)
            if top_k is not None:
                cut = last.topk(min(top_k, last.shape[-1])).values[:, -1:]
                last = torch.where(last < cut, torch.full_like(last, float("-inf")), last)
            idx = torch.cat([idx, torch.multinomial(last.softmax(-1), 1)], 1)
        return idx
