"""A cache that grows its buffers by doubling (capped at block_size), like a vector; a
torch.baddbmm attention on flattened heads; cached decoding until the context is full, then the
sliding window."""

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
        self.limit = config.block_size
        self.buf_k = {}
        self.buf_v = {}
        self.used = {i: 0 for i in range(config.n_layer)}
        self.n_layer = config.n_layer

    def __len__(self):
        return self.used[0]

    @property
    def k(self):
        return [self.buf_k[i][:, :, :self.used[i]] if i in self.buf_k else None for i in range(self.n_layer)]

    @property
    def v(self):
        return [self.buf_v[i][:, :, :self.used[i]] if i in self.buf_v else None for i in range(self.n_layer)]

    def _grow(self, buf, need):
        cap = buf.shape[2]
        if need <= cap:
            return buf
        new_cap = min(max(need, 2 * cap), self.limit)
        bigger = buf.new_zeros(buf.shape[0], buf.shape[1], new_cap, buf.shape[3])
        bigger[:, :, :cap] = buf
        return bigger

    def extend(self, i, k, v):
        n, t = self.used[i], k.shape[2]
        if i not in self.buf_k:
            self.buf_k[i] = k.new_zeros(k.shape[0], k.shape[1], max(t, 4), k.shape[3])
            self.buf_v[i] = v.new_zeros(v.shape[0], v.shape[1], max(t, 4), v.shape[3])
        self.buf_k[i] = self._grow(self.buf_k[i], n + t)
        self.buf_v[i] = self._grow(self.buf_v[i], n + t)
        self.buf_k[i][:, :, n:n + t] = k
        self.buf_v[i][:, :, n:n + t] = v
        self.used[i] = n + t
        return self.buf_k[i][:, :, :n + t], self.buf_v[i][:, :, :n + t]


class CausalSelfAttention(nn.Module):
    def __init__(self, config, i):
        super().__init__()
        self.i, self.nh = i, config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x, cache=None):
        B, T, C = x.shape
        nh, hs = self.nh, C // self.nh
        q, k, v = [t.view(B, T, nh, hs).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2)]
        past = 0
        if cache is not None:
            past = cache.used[self.i]
            k, v = cache.extend(self.i, k, v)
        S = k.shape[2]
        bias = torch.zeros(T, S)
        bias.masked_fill_(torch.ones(T, S, dtype=torch.bool).triu(past + 1), float("-inf"))
        qf, kf, vf = q.reshape(B * nh, T, hs), k.reshape(B * nh, S, hs), v.reshape(B * nh, S, hs)
        att = torch.baddbmm(bias.expand(B * nh, T, S), qf, kf.transpose(1, 2), alpha=1 / math.sqrt(hs))
        y = torch.bmm(att.softmax(-1), vf).view(B, nh, T, hs)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, config, i):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config, i)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = nn.Sequential(nn.Linear(config.n_embd, 4 * config.n_embd), nn.GELU(),
                                 nn.Linear(4 * config.n_embd, config.n_embd))

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def forward(self, idx, targets=None, kv_cache=None):
        B, T = idx.size()
        past = 0 if kv_cache is None else len(kv_cache)
        x = self.wte(idx) + self.wpe(torch.arange(past, past + T, device=idx.device))
        for block in self.blocks:
            x = block(x, kv_cache)
        logits = self.lm_head(self.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    def _next(self, logits, temperature, top_k):
        logits = logits / max(temperature, 1e-8)
        if top_k is not None:
            v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
            logits[logits < v[:, [-1]]] = -float("inf")
        return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, use_cache=True):
        bs = self.config.block_size
        cache = KVCache(self.config) if use_cache and idx.size(1) <= bs else None
        logits = self(idx, kv_cache=cache)[0] if cache is not None else None
        for _ in range(max_new_tokens):
            if logits is None:
                logits, _ = self(idx[:, -bs:])
            nxt = self._next(logits[:, -1, :], temperature, top_k)
            idx = torch.cat((idx, nxt), dim=1)
            if cache is not None and len(cache) < bs:
                logits, _ = self(nxt, kv_cache=cache)
            else:
                cache, logits = None, None
        return idx
