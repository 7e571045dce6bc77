"""Per-head weight tensors (n_head, n_embd, head_size) contracted with torch.einsum, GELU,
pre-LN, the output layer tied to the token embedding, a plain (non-dataclass) config."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class GPTConfig:
    def __init__(self, vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128,
                 dropout=0.0, **unused):
        self.vocab_size, self.block_size = vocab_size, block_size
        self.n_layer, self.n_head, self.n_embd, self.dropout = n_layer, n_head, n_embd, dropout


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, c = cfg.n_head, cfg.n_embd
        d = c // h
        self.wq = nn.Parameter(torch.randn(h, c, d) * 0.02)
        self.wk = nn.Parameter(torch.randn(h, c, d) * 0.02)
        self.wv = nn.Parameter(torch.randn(h, c, d) * 0.02)
        self.wo = nn.Parameter(torch.randn(h, d, c) * 0.02 / math.sqrt(2 * cfg.n_layer))
        self.drop = nn.Dropout(cfg.dropout)
        self.register_buffer("causal", torch.ones(cfg.block_size, cfg.block_size).tril().bool())

    def forward(self, x):
        T = x.shape[1]
        q = torch.einsum("btc,hcd->bhtd", x, self.wq)
        k = torch.einsum("btc,hcd->bhtd", x, self.wk)
        v = torch.einsum("btc,hcd->bhtd", x, self.wv)
        scores = torch.einsum("bhtd,bhsd->bhts", q, k) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~self.causal[:T, :T], float("-inf"))
        weights = self.drop(scores.softmax(dim=-1))
        y = torch.einsum("bhts,bhsd->bhtd", weights, v)
        return self.drop(torch.einsum("bhtd,hdc->btc", y, self.wo))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = Attention(cfg)
        self.ff = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(),
                                nn.Linear(4 * cfg.n_embd, cfg.n_embd), nn.Dropout(cfg.dropout))
        for m in self.ff:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ff(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Parameter(torch.randn(cfg.vocab_size, cfg.n_embd) * 0.02)
        self.pos = nn.Parameter(torch.randn(cfg.block_size, cfg.n_embd) * 0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.LayerNorm(cfg.n_embd)

    def forward(self, idx, targets=None):
        T = idx.shape[1]
        x = self.drop(self.tok[idx] + self.pos[:T])
        for layer in self.layers:
            x = layer(x)
        logits = self.norm(x) @ self.tok.T  # weight tying
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.cfg.block_size:])
            logits = logits[:, -1] / temperature
            if top_k:
                kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(logits.softmax(-1), 1)
            idx = torch.cat([idx, nxt], dim=1)
        return idx
