"""The textbook transformer decoder ("Attention Is All You Need"): fixed sinusoidal position
encodings, embeddings scaled by sqrt(d_model), post-LN, ReLU, one fused q/k/v projection
and an explicit softmax; generation written as a while loop."""

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


def sinusoids(length, d_model):
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


class MaskedMultiHeadAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.h, self.d_k = cfg.n_head, cfg.n_embd // cfg.n_head
        self.w_qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.w_o = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = nn.Dropout(cfg.dropout)
        self.register_buffer("allowed", torch.tril(torch.ones(cfg.block_size, cfg.block_size)).bool())

    def forward(self, x):
        B, T, D = x.shape
        qkv = self.w_qkv(x).reshape(B, T, 3, self.h, self.d_k).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, h, T, d_k)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.d_k)
        scores = scores.masked_fill(~self.allowed[:T, :T], float("-inf"))
        p = self.dropout(torch.softmax(scores, dim=-1))
        out = torch.matmul(p, v).permute(0, 2, 1, 3).reshape(B, T, D)
        return self.w_o(out)


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self_attn = MaskedMultiHeadAttention(cfg)
        self.norm1 = nn.LayerNorm(cfg.n_embd)
        self.ffn = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.ReLU(),
                                 nn.Linear(4 * cfg.n_embd, cfg.n_embd))
        self.norm2 = nn.LayerNorm(cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        x = self.norm1(x + self.drop(self.self_attn(x)))
        return self.norm2(x + self.drop(self.ffn(x)))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.d_model = config.n_embd
        self.embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.register_buffer("pe", sinusoids(config.block_size, config.n_embd), persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.n_layer))
        self.generator = nn.Linear(config.n_embd, config.vocab_size)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None):
        T = idx.size(1)
        x = self.embedding(idx) * math.sqrt(self.d_model) + self.pe[:T]
        x = self.drop(x)
        for layer in self.layers:
            x = layer(x)
        logits = self.generator(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        target_len = idx.size(1) + max_new_tokens
        while idx.size(1) < target_len:
            logits, _ = self.forward(idx[:, -self.config.block_size:])
            logits = logits[:, -1, :] / temperature
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[..., -1, None]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            idx = torch.cat([idx, torch.multinomial(probs, 1)], dim=1)
        return idx
