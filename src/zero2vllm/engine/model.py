"""A Llama-architecture transformer written for serving: flat token batches and a paged KV cache.

Unlike a training model, it takes no [batch, seq_len] tensor. A step's tokens from all sequences
(whole prompts, prompt chunks, single decode tokens) are concatenated into one flat list of
`T` tokens, so every weight matmul is one [T, hidden] x [hidden, out] product, with no padding.
Only attention needs to know which token belongs to which sequence; it gets that from the
`StepContext` (attention.py) and reads earlier tokens' K/V from the paged cache.

Two fusions save matmuls on every layer (the weights are concatenated once, at load time):
q/k/v projections become one `qkv_proj`, gate/up become one `gate_up_proj`.
Weights load from Hugging Face safetensors files by name (`load_weights`), no transformers.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .attention import StepContext, paged_attention, store_kv
from .config import ModelConfig


def rope_tables(cfg: ModelConfig, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin for every position, [max_len, head_dim], with Llama 3's frequency scaling if set."""
    d = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    s = cfg.rope_scaling
    if s:  # "llama3": slow down the low frequencies, keep the high ones, blend in between
        low_wavelen = s["original_max_position_embeddings"] / s.get("low_freq_factor", 1.0)
        high_wavelen = s["original_max_position_embeddings"] / s.get("high_freq_factor", 4.0)
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / s["factor"], inv_freq)
        smooth = (s["original_max_position_embeddings"] / wavelen - s.get("low_freq_factor", 1.0)) / (
            s.get("high_freq_factor", 4.0) - s.get("low_freq_factor", 1.0))
        mid = (1 - smooth) * scaled / s["factor"] + smooth * scaled
        is_mid = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv_freq = torch.where(is_mid, mid, scaled)
    freqs = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
    sin = freqs.sin()
    return torch.cat((freqs, freqs), dim=-1).cos(), torch.cat((-sin, sin), dim=-1)  # sin: sign folded in


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [T, heads, head_dim]. Hugging Face's "rotate half": x * cos + cat(-x2, x1) * sin.

    With the minus sign stored in the first half of `sin`, rotating is one `torch.cat` (the
    products are bit-identical: IEEE multiplication is symmetric in sign).
    """
    half = x.shape[-1] // 2
    return x * cos + torch.cat((x[..., half:], x[..., :half]), dim=-1) * sin


class Linear(nn.Linear):
    """nn.Linear without bias, plus an optional oneDNN-prepacked copy of the weight for the CPU.

    MKL's sgemm is slow for the few rows of a decode step; oneDNN with the weight reordered once
    into its blocked layout (what vLLM's CPU backend does) is faster (docs/history.md).
    """

    packed: torch.Tensor | None = None

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x):
        if self.packed is None:
            return F.linear(x, self.weight)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")


def prepack_for_cpu(model: nn.Module) -> bool:
    """Give every Linear a oneDNN-packed weight, if this PyTorch has the ops and they agree with F.linear."""
    layers = [m for m in model.modules() if isinstance(m, Linear)]
    try:
        for m in layers:
            m.packed = torch.ops.mkldnn._reorder_linear_weight(m.weight.detach(), 16)
        x = torch.randn(3, layers[0].in_features, dtype=layers[0].weight.dtype)
        want = F.linear(x, layers[0].weight)
        if not torch.allclose(layers[0](x), want, rtol=1e-4, atol=1e-4 * want.abs().max().item()):
            raise RuntimeError("results differ")
        return True
    except (AttributeError, RuntimeError, NotImplementedError):
        for m in layers:
            m.packed = None
        return False


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        q_size, kv_size = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        self.qkv_proj = Linear(cfg.hidden_size, q_size + 2 * kv_size)
        self.o_proj = Linear(q_size, cfg.hidden_size)
        self.kv_cache = torch.empty(0)  # [num_blocks, block_size, 2, kv_heads, head_dim], set by the runner

    def forward(self, x, cos, sin, ctx: StepContext):
        qkv = self.qkv_proj(x)
        h, kvh, d = self.num_heads, self.num_kv_heads, self.head_dim
        qk = apply_rope(qkv[:, :(h + kvh) * d].view(-1, h + kvh, d), cos, sin)  # q and k heads at once
        q, k, v = qk[:, :h], qk[:, h:], qkv[:, (h + kvh) * d:].view(-1, kvh, d)
        store_kv(self.kv_cache, k, v, ctx.slot_mapping)
        return self.o_proj(paged_attention(q, self.kv_cache, ctx))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_up_proj = Linear(cfg.hidden_size, 2 * cfg.intermediate_size)
        self.down_proj = Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x):
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(size)), eps

    def forward(self, x):
        if x.is_cuda or x.dtype != torch.float32:  # one fused kernel, computing in fp32 as HF does
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        # fp32 on the CPU: Hugging Face's formula, the same bits with fewer small kernels than F.rms_norm
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.self_attn, self.mlp = Attention(cfg), MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, ctx):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, ctx)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    """Parameter names follow Hugging Face's (minus the "model." prefix), so loading is by name.

    Build it on the "meta" device and call `materialize` (no wasted random init of 135M-1B
    weights before they are overwritten).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = Linear(cfg.hidden_size, cfg.vocab_size)
        self.cos = self.sin = torch.empty(0)

    def materialize(self, device, dtype, max_len: int) -> "LlamaModel":
        """Allocate real (uninitialised) weights on `device` and the RoPE tables up to `max_len`."""
        self.to_empty(device=device).to(dtype)
        if self.cfg.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        cos, sin = rope_tables(self.cfg, max_len)  # in the model's dtype, as Hugging Face applies them
        self.cos, self.sin = cos.to(device, dtype), sin.to(device, dtype)
        return self

    def init_random(self, seed: int = 0) -> None:
        """Random weights (std 0.02, norms at 1) for benchmarks of a shape we cannot download."""
        gen = torch.Generator(device=self.lm_head.weight.device).manual_seed(seed)
        for name, p in self.named_parameters():
            if p.dim() == 1:
                p.data.fill_(1.0)
            else:
                p.data.normal_(0.0, 0.02, generator=gen)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """Hidden states [T, hidden] for the flat batch of tokens, after the final norm."""
        x = self.embed_tokens(input_ids)
        cos = self.cos[positions].unsqueeze(1)  # [T, 1, head_dim], shared by all heads
        sin = self.sin[positions].unsqueeze(1)
        for layer in self.layers:
            x = layer(x, cos, sin, ctx)
        return self.norm(x)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden).float()


# Hugging Face projection name -> (our fused parameter, which slice of it)
_FUSED = {"q_proj": ("qkv_proj", 0), "k_proj": ("qkv_proj", 1), "v_proj": ("qkv_proj", 2),
          "gate_proj": ("gate_up_proj", 0), "up_proj": ("gate_up_proj", 1)}


def load_weights(model: LlamaModel, folder: str | Path) -> None:
    """Copy every tensor of the folder's *.safetensors into the model, fusing q/k/v and gate/up."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors files")
    cfg = model.cfg
    q, kv, inter = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim, cfg.intermediate_size
    offsets = {"qkv_proj": (0, q, q + kv), "gate_up_proj": (0, inter)}
    params = dict(model.named_parameters(remove_duplicate=False))
    missing = set(params) - ({"lm_head.weight"} if cfg.tie_word_embeddings else set())
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for hf_name in f.keys():
                name = hf_name.removeprefix("model.")
                if "rotary_emb" in name:
                    continue
                tensor, start = f.get_tensor(hf_name), 0
                proj = name.split(".")[-2] if name.count(".") >= 2 else ""
                if proj in _FUSED:
                    fused, shard = _FUSED[proj]
                    name, start = name.replace(proj, fused), offsets[fused][shard]
                if name not in params:
                    raise KeyError(f"{file.name}: unexpected tensor {hf_name}; is this a Llama model?")
                target = params[name].data
                target = target[start:start + tensor.shape[0]] if target.shape != tensor.shape else target
                target.copy_(tensor)
                missing.discard(name)
    if missing:
        raise ValueError(f"{folder}: missing weights {sorted(missing)[:3]}...")
