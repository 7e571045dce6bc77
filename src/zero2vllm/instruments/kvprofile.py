"""KV-cache profiler: how big the cache really is, and what it costs, as the context grows.

For each context length L we prefill L tokens with the cache on, then measure:
  - kv_bytes:    the bytes of the cache tensors themselves (walked and summed, not estimated),
  - formula:     2 (K and V) x layers x kv_heads x head_dim x bytes per element x L,
  - rss:         the process's resident memory while the cache is held (psutil),
  - cuda:        allocated and peak CUDA memory on a GPU,
  - decode_ms:   time for one new token WITH the cache at this length (median of a few steps),
  - prefill_ms:  time for one forward pass over all L tokens, which is what every new token costs
                 WITHOUT a cache (the model recomputes the whole prefix).
Then we fit kv_bytes = slope x L + intercept. The week-2 lesson in one line: the slope is exactly
the formula's bytes per token (46,080 B for SmolLM2 in fp32), and nothing else in the process
grows like that.

A model plugs in through a small adapter (`KVModel`): the Hugging Face adapter covers SmolLM2,
any local HF folder and Llama 3.2 1B; `CallableKVModel` covers the reference GPT and the
learner's week-1 model (anything with `model(idx, kv_cache) -> (logits, kv_cache)`).
"""

from __future__ import annotations

import csv
import gc
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

DEFAULT_LENGTHS = (128, 256, 512, 1024)
DECODE_STEPS = 5


# -- measuring tensors ---------------------------------------------------------------------------
def cache_tensors(obj: Any) -> list:
    """Every distinct tensor reachable from a cache object (HF Cache, tuples, lists, dicts, objects).

    Tensors sharing storage are counted once, so a view of a preallocated buffer is not
    double-counted; a preallocated (static) cache counts its whole buffer, which is the truth
    about its memory.
    """
    import torch

    found: dict[tuple, torch.Tensor] = {}
    seen: set[int] = set()

    def walk(x: Any, depth: int) -> None:
        if depth > 8 or id(x) in seen:
            return
        seen.add(id(x))
        if isinstance(x, torch.Tensor):
            storage = x.untyped_storage()
            key = (storage.data_ptr(), x.device.type) if storage.data_ptr() else ("id", id(x))
            if key not in found or found[key].numel() < x.numel():
                found[key] = x
            return
        if isinstance(x, dict):
            for v in x.values():
                walk(v, depth + 1)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v, depth + 1)
        elif hasattr(x, "__dict__") and not isinstance(x, (str, bytes, type)):
            for v in vars(x).values():
                walk(v, depth + 1)

    walk(obj, 0)
    return list(found.values())


def tensors_bytes(obj: Any) -> int:
    """Bytes held by the distinct storages reachable from `obj`."""
    total, storages = 0, set()
    for t in cache_tensors(obj):
        storage = t.untyped_storage()
        key = (storage.data_ptr(), t.device.type)
        if storage.data_ptr() and key in storages:
            continue
        storages.add(key)
        total += storage.nbytes() if storage.data_ptr() else t.numel() * t.element_size()
    return total


def formula_bytes(layers: int, kv_heads: int, head_dim: int, dtype_bytes: int, tokens: int) -> int:
    """2 (K and V) x layers x kv_heads x head_dim x bytes per element x tokens."""
    return 2 * layers * kv_heads * head_dim * dtype_bytes * tokens


# -- model adapters ------------------------------------------------------------------------------
@dataclass
class KVShape:
    layers: int
    kv_heads: int
    head_dim: int
    dtype_bytes: int
    dtype: str

    @property
    def bytes_per_token(self) -> int:
        return formula_bytes(self.layers, self.kv_heads, self.head_dim, self.dtype_bytes, 1)


class KVModel:
    """What the profiler needs from a model. Subclasses fill these in."""

    name: str = "model"
    shape: KVShape
    device: str = "cpu"
    max_len: int | None = None
    vocab_size: int = 2

    def new_cache(self) -> Any:  # an empty cache the forward passes fill
        raise NotImplementedError

    def forward(self, ids, cache) -> tuple[Any, Any]:  # -> (logits, cache)
        raise NotImplementedError


class HFKVModel(KVModel):
    """A Hugging Face causal LM: SmolLM2, any local folder, Llama 3.2 1B."""

    def __init__(self, model, name: str):
        import inspect

        import torch

        self.model, self.name = model, name
        cfg = model.config
        cfg = getattr(cfg, "text_config", None) or cfg
        heads = cfg.num_attention_heads
        dtype = next(model.parameters()).dtype
        self.shape = KVShape(
            layers=cfg.num_hidden_layers,
            kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
            head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // heads,
            dtype_bytes=torch.empty((), dtype=dtype).element_size(),
            dtype=str(dtype).removeprefix("torch."),
        )
        self.device = str(next(model.parameters()).device)
        self.max_len = getattr(cfg, "max_position_embeddings", None)
        self.vocab_size = cfg.vocab_size
        params = inspect.signature(model.forward).parameters
        # transformers 5.2x renamed past_key_values to cache; accept either.
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    def new_cache(self):
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self.model.config)
        except TypeError:  # older transformers
            return DynamicCache()

    def forward(self, ids, cache):
        out = self.model(input_ids=ids, use_cache=True, **{self._cache_kw: cache})
        return out.logits, cache  # the DynamicCache is filled in place


class CallableKVModel(KVModel):
    """A plain PyTorch GPT with the kv-cache lab's interface (the reference and the learner's):

        cache = make_cache()                     # e.g. module.KVCache(config)
        logits, loss = model(idx, kv_cache=cache)   # appends idx's keys and values to cache
    """

    def __init__(self, model, name: str, shape: KVShape, make_cache: Callable[[], Any],
                 max_len: int | None, vocab_size: int):
        self.model, self.name, self.shape = model, name, shape
        self.make_cache = make_cache
        self.max_len, self.vocab_size = max_len, vocab_size
        self.device = str(next(model.parameters()).device)

    def new_cache(self):
        return self.make_cache()

    def forward(self, ids, cache):
        out = self.model(ids, kv_cache=cache)
        logits = out[0] if isinstance(out, (tuple, list)) else out
        return logits, cache


# -- the profile ---------------------------------------------------------------------------------
@dataclass
class KVRow:
    tokens: int
    kv_bytes: int
    formula_bytes: int
    rss_bytes: int
    rss_delta_bytes: int
    cuda_allocated_bytes: int | None
    cuda_peak_bytes: int | None
    prefill_ms: float
    decode_ms: float

    @property
    def matches(self) -> bool:
        return self.kv_bytes == self.formula_bytes


@dataclass
class KVProfile:
    model: str
    device: str
    shape: KVShape
    rows: list[KVRow] = field(default_factory=list)
    fit_slope: float = 0.0
    fit_intercept: float = 0.0
    fit_r2: float = 0.0
    baseline_rss_bytes: int = 0

    @property
    def all_match(self) -> bool:
        return bool(self.rows) and all(r.matches for r in self.rows)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bytes_per_token_formula"] = self.shape.bytes_per_token
        d["all_match"] = self.all_match
        return d


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def line_fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least-squares y = slope x + intercept, and R^2."""
    n = len(xs)
    if n < 2:
        return (ys[0] / xs[0] if n and xs[0] else 0.0), 0.0, 1.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    slope = sxy / sxx if sxx else 0.0
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys))
    r2 = 1.0 - ss_res / ss_tot if ss_tot else 1.0
    return slope, intercept, r2


def profile_kv(
    kvm: KVModel,
    lengths: list[int],
    *,
    decode_steps: int = DECODE_STEPS,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> KVProfile:
    """Prefill each length with the cache on and measure the cache, memory and per-token time."""
    import psutil
    import torch

    proc = psutil.Process(os.getpid())
    device = kvm.device
    on_cuda = device.startswith("cuda")
    gen = torch.Generator().manual_seed(seed)
    prof = KVProfile(model=kvm.name, device=device, shape=kvm.shape)
    gc.collect()
    prof.baseline_rss_bytes = proc.memory_info().rss

    with torch.inference_mode():
        # Warm-up: first calls allocate workspaces and pick kernels; don't bill them to row one.
        warm = torch.randint(0, kvm.vocab_size, (1, 8), generator=gen).to(device)
        _, c = kvm.forward(warm, kvm.new_cache())
        kvm.forward(warm[:, -1:], c)
        del c
        for length in lengths:
            if kvm.max_len and length + decode_steps > kvm.max_len:
                raise ValueError(
                    f"length {length} (+{decode_steps} decode steps) is over the model's context "
                    f"of {kvm.max_len} tokens"
                )
            gc.collect()
            rss_before = proc.memory_info().rss
            if on_cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            ids = torch.randint(0, kvm.vocab_size, (1, length), generator=gen).to(device)
            _sync(device)
            t0 = time.perf_counter()
            logits, cache = kvm.forward(ids, kvm.new_cache())
            _sync(device)
            prefill_ms = (time.perf_counter() - t0) * 1e3
            # Measure the cache now: exactly `length` tokens in it.
            kv_bytes = tensors_bytes(cache)
            rss = proc.memory_info().rss
            cuda_alloc = torch.cuda.memory_allocated() if on_cuda else None
            # Per-token time with the cache: a few greedy decode steps on top of this context.
            step_ms = []
            nxt = logits[:, -1:].argmax(-1)
            for _ in range(decode_steps):
                _sync(device)
                t0 = time.perf_counter()
                logits, cache = kvm.forward(nxt, cache)
                _sync(device)
                step_ms.append((time.perf_counter() - t0) * 1e3)
                nxt = logits[:, -1:].argmax(-1)
            cuda_peak = torch.cuda.max_memory_allocated() if on_cuda else None
            row = KVRow(
                tokens=length,
                kv_bytes=kv_bytes,
                formula_bytes=formula_bytes(
                    kvm.shape.layers, kvm.shape.kv_heads, kvm.shape.head_dim, kvm.shape.dtype_bytes, length
                ),
                rss_bytes=rss,
                rss_delta_bytes=rss - rss_before,
                cuda_allocated_bytes=cuda_alloc,
                cuda_peak_bytes=cuda_peak,
                prefill_ms=prefill_ms,
                decode_ms=statistics.median(step_ms) if step_ms else 0.0,
            )
            prof.rows.append(row)
            if progress:
                progress(
                    f"  {length:>6} tokens: KV {row.kv_bytes:,} B (formula {row.formula_bytes:,}), "
                    f"decode {row.decode_ms:.1f} ms/token"
                )
            del cache, logits, ids
    prof.fit_slope, prof.fit_intercept, prof.fit_r2 = line_fit(
        [r.tokens for r in prof.rows], [r.kv_bytes for r in prof.rows]
    )
    return prof


# -- output --------------------------------------------------------------------------------------
def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.1f}"


def format_table(prof: KVProfile) -> str:
    s = prof.shape
    lines = [
        f"KV cache profile: {prof.model} on {prof.device} ({s.dtype})",
        f"formula: 2 x {s.layers} layers x {s.kv_heads} kv_heads x {s.head_dim} head_dim x "
        f"{s.dtype_bytes} B = {s.bytes_per_token:,} B per token",
        "",
    ]
    cuda = any(r.cuda_allocated_bytes is not None for r in prof.rows)
    head = f"{'tokens':>7} {'KV bytes':>14} {'formula':>14} {'match':>5} {'KV MiB':>8} {'RSS MiB':>9} {'dRSS MiB':>9}"
    if cuda:
        head += f" {'CUDA alloc':>10} {'CUDA peak':>10}"
    head += f" {'prefill ms':>10} {'decode ms/tok':>13}"
    lines.append(head)
    for r in prof.rows:
        line = (
            f"{r.tokens:>7} {r.kv_bytes:>14,} {r.formula_bytes:>14,} {'yes' if r.matches else 'NO':>5} "
            f"{_mib(r.kv_bytes):>8} {_mib(r.rss_bytes):>9} {_mib(r.rss_delta_bytes):>9}"
        )
        if cuda:
            line += f" {_mib(r.cuda_allocated_bytes):>10} {_mib(r.cuda_peak_bytes):>10}"
        line += f" {r.prefill_ms:>10.1f} {r.decode_ms:>13.2f}"
        lines.append(line)
    lines += [
        "",
        f"line fit: KV bytes = {prof.fit_slope:,.1f} x tokens + {prof.fit_intercept:,.1f} "
        f"(R^2 {prof.fit_r2:.6f}); formula slope {s.bytes_per_token:,}",
        "measured == formula at every length" if prof.all_match else
        "MISMATCH: the cache holds a different number of bytes than the formula says (rows marked NO); "
        "a cache that keeps views into a bigger tensor (the fused q/k/v output) keeps all of it alive",
        "decode ms/tok is the cost of a new token with the cache; prefill ms is what it costs "
        "without one (the whole prefix recomputed).",
    ]
    return "\n".join(lines)


def write_csv(prof: KVProfile, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([
            "model", "device", "dtype", "tokens", "kv_bytes", "formula_bytes", "matches", "rss_bytes",
            "rss_delta_bytes", "cuda_allocated_bytes", "cuda_peak_bytes", "prefill_ms", "decode_ms",
        ])
        for r in prof.rows:
            w.writerow([
                prof.model, prof.device, prof.shape.dtype, r.tokens, r.kv_bytes, r.formula_bytes,
                int(r.matches), r.rss_bytes, r.rss_delta_bytes,
                "" if r.cuda_allocated_bytes is None else r.cuda_allocated_bytes,
                "" if r.cuda_peak_bytes is None else r.cuda_peak_bytes,
                f"{r.prefill_ms:.3f}", f"{r.decode_ms:.3f}",
            ])
    return path


def write_json(prof: KVProfile, path: Path) -> Path:
    path.write_text(json.dumps(prof.to_dict(), indent=2))
    return path


def write_plot(prof: KVProfile, path: Path) -> Path:
    """Two panels: KV bytes against tokens with the formula line; ms per token with/without cache."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r.tokens for r in prof.rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(xs, [r.kv_bytes / 2**20 for r in prof.rows], "o", label="measured (cache tensors)")
    ax1.plot(xs, [r.formula_bytes / 2**20 for r in prof.rows], "-", label="formula")
    if any(r.cuda_allocated_bytes is not None for r in prof.rows):
        ax1.plot(xs, [r.cuda_peak_bytes / 2**20 for r in prof.rows], "s--", label="CUDA peak")
    ax1.set_xlabel("tokens in the cache")
    ax1.set_ylabel("MiB")
    ax1.set_title(f"KV cache: {prof.shape.bytes_per_token:,} B/token")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(xs, [r.decode_ms for r in prof.rows], "o-", label="with cache (one decode step)")
    ax2.plot(xs, [r.prefill_ms for r in prof.rows], "o-", label="without cache (full recompute)")
    ax2.set_xlabel("context length (tokens)")
    ax2.set_ylabel("ms per new token")
    ax2.set_title("cost of the next token")
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.suptitle(f"{prof.model} on {prof.device} ({prof.shape.dtype})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
