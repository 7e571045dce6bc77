"""Post-LN (the original transformer's x = norm(x + sublayer(x))), one per-head q/k/v tensor
(3, n_head, n_embd, head_size) with einsum, a hand-written numerically stable softmax,
q scaled before the product, ReLU, biases everywhere, no final norm."""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 65
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0


def stable_softmax(x, dim):
    x = x - x.max(dim=dim, keepdim=True).values
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


class SelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h = c.n_head
        self.d = c.n_embd // c.n_head
        self.qkv = nn.Parameter(torch.empty(3, self.h, c.n_embd, self.d).normal_(0, 0.02))
        self.qkv_bias = nn.Parameter(torch.zeros(3, self.h, 1, self.d))
        self.out = nn.Linear(c.n_embd, c.n_embd)
        self.p = c.dropout
        self.register_buffer("mask", torch.tril(torch.ones(c.block_size, c.block_size)))

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (torch.einsum("btc,hcd->bhtd", x, self.qkv[i]) + self.qkv_bias[i]
                   for i in range(3))
        q = q * self.d ** -0.5
        att = torch.einsum("bhid,bhjd->bhij", q, k)
        att = att.masked_fill(self.mask[:T, :T] == 0, float("-inf"))
        att = stable_softmax(att, dim=-1)
        att = F.dropout(att, self.p, training=self.training)
        y = torch.einsum("bhij,bhjd->bihd", att, v).reshape(B, T, C)
        return F.dropout(self.out(y), self.p, training=self.training)


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attn = SelfAttention(c)
        self.ln_a = nn.LayerNorm(c.n_embd)
        self.fc1 = nn.Linear(c.n_embd, 4 * c.n_embd)
        self.fc2 = nn.Linear(4 * c.n_embd, c.n_embd)
        self.ln_m = nn.LayerNorm(c.n_embd)
        self.p = c.dropout

    def forward(self, x):
        x = self.ln_a(x + self.attn(x))
        h = self.fc2(F.relu(self.fc1(x)))
        return self.ln_m(x + F.dropout(h, self.p, training=self.training))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.n_embd)
        self.positions = nn.Embedding(config.block_size, config.n_embd)
        self.layers = nn.ModuleList([Layer(config) for _ in range(config.n_layer)])
        self.head = nn.Linear(config.n_embd, config.vocab_size)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, idx, targets=None):
        b, t = idx.shape
        x = self.embed(idx) + self.positions(torch.arange(t, device=idx.device))[None]
        x = F.dropout(x, self.config.dropout, training=self.training)
        for layer in self.layers:
            x = layer(x)
        logits = self.head(x)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(b * t, -1), targets.view(b * t))

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        for _ in range(max_new_tokens):
            window = idx if idx.size(1) <= self.config.block_size else idx[:, -self.config.block_size:]
            logits = self(window)[0][:, -1, :] / temperature
            if top_k is not None:
                top = torch.topk(logits, min(top_k, logits.size(-1))).values
                logits = torch.where(logits < top[:, -1:], torch.full_like(logits, -1e10), logits)
            probs = stable_softmax(logits, dim=-1)
            idx = torch.cat([idx, torch.multinomial(probs, 1)], dim=-1)
        return idx
