"""A Llama-architecture transformer written for serving: flat token batches and a paged KV cache.

Unlike a training model, it takes no [batch, seq_len] tensor. A step's tokens from all sequences
(whole prompts, prompt chunks, single decode tokens) are concatenated into one flat list of
`T` tokens, so every weight matmul is one [T, hidden] x [hidden, out] product, with no padding.
Only attention needs to know which token belongs to which sequence; it gets that from the
`StepContext` (attention.py) and reads earlier tokens' K/V from the paged cache.

Two fusions save matmuls on every layer (the weights are concatenated once, at load time):
q/k/v projections become one `qkv_proj`, gate/up become one `gate_up_proj`. On a GPU the small
elementwise steps between the matmuls (`@fused`: RoPE, SiLU * up, residual add + RMSNorm) go
through torch.compile, which fuses each into one or two kernels; on the CPU, through C++ versions.
Weights load from Hugging Face safetensors files by name (`load_weights`), no transformers.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .attention import StepContext, paged_attention, store_kv
from .config import ModelConfig
from .parallel import (MergedColumnParallelLinear, QKVParallelLinear, ReplicatedLinear as Linear,
                       RowParallelLinear, TPGroup)


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


# name -> the C++ version of a @fused function, for fp32 on the CPU (kernels/cpu_kernels.py); the
# runner fills it when the kernels build and agree with the functions below, else leaves it empty
CPU_KERNELS: dict = {}


def fused(fn):
    """One pass for `fn`'s elementwise ops: on CUDA `fn` through torch.compile (Inductor fuses them into
    one or two kernels, a launch fewer each in every layer of a decode step), on the CPU in fp32 its C++
    version if loaded, else `fn` as written (kept as `.python`, the reference both are checked against)."""
    compiled = functools.cache(lambda: torch.compile(fn, dynamic=True))

    def run(*args):
        if args[0].is_cuda:
            return compiled()(*args)
        return CPU_KERNELS.get(fn.__name__, fn)(*args) if args[0].dtype == torch.float32 else fn(*args)
    run.python = fn
    return run


@fused
def rope_qkv(qkv: torch.Tensor, cos, sin, h: int, kvh: int, d: int):
    """q with RoPE, and K (with RoPE) and V stacked as the cache stores them, from the fused projection."""
    qk = apply_rope(qkv[:, :(h + kvh) * d].view(-1, h + kvh, d), cos, sin)  # q and k heads at once
    return qk[:, :h], torch.stack((qk[:, h:], qkv[:, (h + kvh) * d:].view(-1, kvh, d)), dim=1)


@fused
def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


@fused
def add_rms_norm(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, eps: float):
    """(x + y, RMSNorm(x + y)): the residual add and the next norm in one pass."""
    x = x + y
    return x, rms_norm(x, weight, eps)


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
    def __init__(self, cfg: ModelConfig, tp: TPGroup):
        super().__init__()
        # this rank's share of the heads (all of them when tp.size is 1)
        self.num_heads, self.num_kv_heads = cfg.num_heads // tp.size, cfg.num_kv_heads // tp.size
        self.head_dim = cfg.head_dim
        self.qkv_proj = QKVParallelLinear(cfg.hidden_size, cfg.head_dim, cfg.num_heads, cfg.num_kv_heads, tp)
        self.o_proj = RowParallelLinear(cfg.num_heads * cfg.head_dim, cfg.hidden_size, tp)  # all-reduce 1
        self.kv_cache = torch.empty(0)  # [num_blocks, block_size, 2, kv_heads, head_dim], set by the runner

    def forward(self, x, cos, sin, ctx: StepContext):
        q, kv = rope_qkv(self.qkv_proj(x), cos, sin, self.num_heads, self.num_kv_heads, self.head_dim)
        store_kv(self.kv_cache, kv, ctx.slot_mapping)
        return self.o_proj(paged_attention(q, self.kv_cache, ctx))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, tp: TPGroup):
        super().__init__()
        self.gate_up_proj = MergedColumnParallelLinear(cfg.hidden_size, [cfg.intermediate_size] * 2, tp)
        self.down_proj = RowParallelLinear(cfg.intermediate_size, cfg.hidden_size, tp)  # all-reduce 2

    def forward(self, x):
        return self.down_proj(silu_mul(self.gate_up_proj(x)))


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    if x.is_cuda or x.dtype != torch.float32:  # one fused kernel, computing in fp32 as HF does
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    # fp32 on the CPU: Hugging Face's formula, the same bits with fewer small kernels than F.rms_norm
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(size)), eps

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, tp: TPGroup):
        super().__init__()
        self.self_attn, self.mlp = Attention(cfg, tp), MLP(cfg, tp)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, residual, cos, sin, ctx):
        """x: the layer before's MLP output, not yet added to the residual stream (as vLLM passes it), so
        that add and the input norm are one fused pass -> (this layer's MLP output, residual)."""
        pre, post = self.input_layernorm, self.post_attention_layernorm
        residual, h = (x, pre(x)) if residual is None else add_rms_norm(residual, x, pre.weight, pre.eps)
        residual, h = add_rms_norm(residual, self.self_attn(h, cos, sin, ctx), post.weight, post.eps)
        return self.mlp(h), residual


class LlamaModel(nn.Module):
    """Parameter names follow Hugging Face's (minus the "model." prefix), so loading is by name.

    Build it on the "meta" device and call `materialize` (no wasted random init of 135M-1B
    weights before they are overwritten).
    """

    def __init__(self, cfg: ModelConfig, tp: TPGroup | None = None):
        super().__init__()
        self.cfg, tp = cfg, tp or TPGroup()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)  # replicated on every rank
        self.layers = nn.ModuleList(DecoderLayer(cfg, tp) for _ in range(cfg.num_layers))
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
        """Random weights (std 0.02, norms at 1) for benchmarks of a shape we cannot download.

        Drawn whole, in Hugging Face's names, and loaded like a checkpoint: every rank keeps its
        slice of the same weights, so TP=2 computes what TP=1 does.
        """
        cfg, dev = self.cfg, self.lm_head.weight.device
        gen = torch.Generator(device=dev).manual_seed(seed)
        q, kv, h, inter = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim, cfg.hidden_size, \
            cfg.intermediate_size
        shapes = {"embed_tokens.weight": (cfg.vocab_size, h), "norm.weight": (h,)}
        if not cfg.tie_word_embeddings:
            shapes["lm_head.weight"] = (cfg.vocab_size, h)
        for i in range(cfg.num_layers):
            for name, shape in {"input_layernorm": (h,), "post_attention_layernorm": (h,), "self_attn.q_proj": (q, h),
                                "self_attn.k_proj": (kv, h), "self_attn.v_proj": (kv, h), "self_attn.o_proj": (h, q),
                                "mlp.gate_proj": (inter, h), "mlp.up_proj": (inter, h),
                                "mlp.down_proj": (h, inter)}.items():
                shapes[f"layers.{i}.{name}.weight"] = shape
        load_tensors(self, ((name, torch.ones(s, device=dev) if len(s) == 1 else
                             torch.empty(s, device=dev).normal_(0.0, 0.02, generator=gen)) for name, s in shapes.items()))

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """Hidden states [T, hidden] for the flat batch of tokens, after the final norm."""
        x, residual = self.embed_tokens(input_ids), None
        cos = self.cos[positions].unsqueeze(1)  # [T, 1, head_dim], shared by all heads
        sin = self.sin[positions].unsqueeze(1)
        for layer in self.layers:
            x, residual = layer(x, residual, cos, sin, ctx)
        return add_rms_norm(residual, x, self.norm.weight, self.norm.eps)[1]

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden).float()


# Hugging Face projection name -> (our fused parameter, which slice of it)
_FUSED = {"q_proj": ("qkv_proj", 0), "k_proj": ("qkv_proj", 1), "v_proj": ("qkv_proj", 2),
          "gate_proj": ("gate_up_proj", 0), "up_proj": ("gate_up_proj", 1)}


def load_weights(model: LlamaModel, folder: str | Path) -> None:
    """Load every tensor of the folder's *.safetensors into the model."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors files")

    def tensors():
        for file in files:
            with safe_open(str(file), framework="pt") as f:
                yield from ((name, f.get_tensor(name)) for name in f.keys())

    load_tensors(model, tensors(), str(folder))


def load_tensors(model: LlamaModel, tensors, source: str = "random weights") -> None:
    """Copy (Hugging Face name, whole tensor) pairs into the model: q/k/v and gate/up go into their
    fused weight, and each parallel layer's `weight_loader` keeps this rank's slice."""
    params = dict(model.named_parameters(remove_duplicate=False))
    missing = set(params) - ({"lm_head.weight"} if model.cfg.tie_word_embeddings else set())
    for hf_name, tensor in tensors:
        name, shard = hf_name.removeprefix("model."), 0
        if "rotary_emb" in name:
            continue
        proj = name.split(".")[-2] if name.count(".") >= 2 else ""
        if proj in _FUSED:
            fused, shard = _FUSED[proj]
            name = name.replace(proj, fused)
        if name not in params:
            raise KeyError(f"{source}: unexpected tensor {hf_name}; is this a Llama model?")
        module = model.get_submodule(name.rsplit(".", 1)[0])
        if hasattr(module, "weight_loader"):
            module.weight_loader(tensor, shard)
        else:  # norms and the embedding: whole on every rank
            params[name].data.copy_(tensor)
        missing.discard(name)
    if missing:
        raise ValueError(f"{source}: missing weights {sorted(missing)[:3]}...")
