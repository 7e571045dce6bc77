"""A KV cache preallocated to block_size; separate q/k/v projections; SDPA with a bool mask."""

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
    def __init__(self, config):
        self.cfg = config
        self.kbuf = None  # (n_layer, B, nh, block_size, hs), allocated on the first update
        self.vbuf = None
        self.filled = [0] * config.n_layer

    def __len__(self):
        return self.filled[0]

    @property
    def k(self):
        return [self.kbuf[i, :, :, :self.filled[i]] for i in range(self.cfg.n_layer)]

    @property
    def v(self):
        return [self.vbuf[i, :, :, :self.filled[i]] for i in range(self.cfg.n_layer)]

    def write(self, layer, k, v):
        if self.kbuf is None:
            B, nh, _, hs = k.shape
            shape = (self.cfg.n_layer, B, nh, self.cfg.block_size, hs)
            self.kbuf = torch.zeros(shape, dtype=k.dtype, device=k.device)
            self.vbuf = torch.zeros(shape, dtype=v.dtype, device=v.device)
        a, b = self.filled[layer], self.filled[layer] + k.shape[2]
        self.kbuf[layer, :, :, a:b] = k
        self.vbuf[layer, :, :, a:b] = v
        self.filled[layer] = b
        return self.kbuf[layer, :, :, :b], self.vbuf[layer, :, :, :b], a


class Attention(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        self.layer, self.nh = layer, cfg.n_head
        self.q = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.k = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.v = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.o = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x, cache=None):
        B, T, C = x.shape
        split = lambda t: t.view(B, T, self.nh, C // self.nh).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        start = 0
        if cache is not None:
            k, v, start = cache.write(self.layer, k, v)
        qpos = torch.arange(start, start + T).unsqueeze(1)
        kpos = torch.arange(k.shape[2]).unsqueeze(0)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=kpos <= qpos)
        return self.o(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = Attention(cfg, layer)
        self.ff = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.ReLU(),
                                nn.Linear(4 * cfg.n_embd, cfg.n_embd))

    def forward(self, x, cache=None):
        x = x + self.attn(self.n1(x), cache)
        return x + self.ff(self.n2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.tok = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.norm = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size)

    def forward(self, idx, targets=None, kv_cache=None):
        T = idx.shape[1]
        start = len(kv_cache) if kv_cache is not None else 0
        x = self.tok(idx) + self.pos(torch.arange(start, start + T))
        for blk in self.blocks:
            x = blk(x, kv_cache)
        logits = self.head(self.norm(x))
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    def pick(self, logits, temperature, top_k):
        logits = logits / max(temperature, 1e-8)
        if top_k is not None:
            kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return torch.multinomial(logits.softmax(-1), 1)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, use_cache=True):
        bs = self.config.block_size
        if use_cache and idx.shape[1] + max_new_tokens <= bs:
            cache = KVCache(self.config)
            logits, _ = self(idx, kv_cache=cache)
            out = [idx]
            for i in range(max_new_tokens):
                nxt = self.pick(logits[:, -1], temperature, top_k)
                out.append(nxt)
                if i + 1 < max_new_tokens:
                    logits, _ = self(nxt, kv_cache=cache)
            return torch.cat(out, dim=1)
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -bs:])
            idx = torch.cat([idx, self.pick(logits[:, -1], temperature, top_k)], dim=1)
        return idx
