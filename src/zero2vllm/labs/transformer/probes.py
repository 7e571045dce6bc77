"""What the transformer checks see of one forward pass, whatever the design: a TorchFunctionMode
that looks at the VALUES every torch function returns, not at names or modules.

- Attention maps: any (..., T, T) tensor of non-negative weights whose rows (or, for a softmax
  over the wrong dimension, columns) sum to 1, however it was computed: F.softmax, a
  hand-written exp / sum, einsum, a list of Head modules. Maps with equal values count once,
  so a dropout (identity in eval) or a .contiguous() does not double them. Fused kernels that
  never materialise the map count from their arguments: F.scaled_dot_product_attention (the
  shape of q) and nn.MultiheadAttention (its num_heads).
- Score scaling: each raw product (q @ k^T, einsum, bmm) of shape (..., T, T) and the input the
  softmax (or exp) receives; a fit of one against the other gives the scale that was applied.
- Normalisation: distinct (..., T, C) tensors whose every row has unit RMS (what LayerNorm and
  RMSNorm return at init, gain 1), and the input of the output layer (the op that makes V-wide
  rows).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

SOFTMAXES = {F.softmax, torch.softmax, torch.Tensor.softmax, F.log_softmax, torch.log_softmax,
             torch.Tensor.log_softmax}
EXPS = {torch.exp, torch.Tensor.exp}
PRODUCTS = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm,
            torch.Tensor.bmm, torch.einsum}  # not baddbmm: its alpha scales inside the product
NORMS = {F.layer_norm, F.group_norm, getattr(F, "rms_norm", F.layer_norm)}
SCALARS = {torch.mul, torch.Tensor.mul, torch.Tensor.__mul__, torch.Tensor.__rmul__,
           torch.Tensor.mul_, torch.Tensor.__imul__, torch.div, torch.Tensor.div,
           torch.Tensor.__truediv__, torch.Tensor.div_, torch.Tensor.__itruediv__}


def _signature(x: torch.Tensor) -> tuple:
    """Values, rounded, as a hashable key: equal maps (a dropout in eval, a copy) count once."""
    flat = x.detach().double().flatten()
    g = torch.Generator().manual_seed(len(flat))
    w = torch.rand(len(flat), generator=g, dtype=torch.float64)
    return (tuple(x.shape[-2:]), round(float((flat * w).sum()), 6), round(float(flat.sum()), 6))


def _scalar(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dim() <= 1:
        return float(value)
    return None


class Probe(TorchFunctionMode):
    """Use as `with Probe(T, C, V): model(idx)` with idx of length T (choose T unlike any other
    size of the model), then read the fields."""

    def __init__(self, T: int, C: int, V: int):
        super().__init__()
        self.T, self.C, self.V = T, C, V
        self.keys_maps: set = set()  # signatures of maps normalised over the keys (rows)
        self.query_maps: set = set()  # ... over the queries (columns): softmax(dim=-2)
        self.fused_maps = 0  # maps computed inside SDPA / MultiheadAttention (per sequence x head)
        self.fused: list[str] = []  # "sdpa" / "mha"
        self.sdpa_scales: list[tuple[float | None, int]] = []  # (scale kwarg, head size)
        self.products: list[tuple[torch.Tensor, int]] = []  # raw (..., T, T) products, contraction
        self.scales: list[float] = []  # fitted scale of each softmax/exp input vs its product
        self.prescaled: set[int] = set()  # d of (..., T, d) tensors a scalar multiplied (q or k
        # scaled before the product)
        self.normalised: set = set()  # signatures of norm outputs and unit-RMS (..., T, C) rows
        self.norm_calls = 0  # F.layer_norm / F.rms_norm / F.group_norm calls
        self.output_inputs: list[torch.Tensor] = []  # inputs of ops that produced V-wide rows

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            with torch.no_grad():
                self._see(func, args, kwargs, out)
        except Exception:  # noqa: BLE001 - a probe must never break the learner's forward
            pass
        return out

    # -- what each call tells ----------------------------------------------------------------
    def _see(self, func, args, kwargs, out) -> None:
        T = self.T
        if func is F.scaled_dot_product_attention:
            q = args[0] if args else kwargs["query"]
            self.fused.append("sdpa")
            self.fused_maps += q.numel() // (q.shape[-1] * q.shape[-2])
            self.sdpa_scales.append((kwargs.get("scale"), int(q.shape[-1])))
            return
        if func is F.multi_head_attention_forward:
            query = args[0] if args else kwargs["query"]
            heads = args[4] if len(args) > 4 else kwargs["num_heads"]
            self.fused.append("mha")
            self.fused_maps += int(heads) * (query.numel() // (query.shape[-1] * T))
            return
        if func in NORMS and isinstance(out, torch.Tensor):
            self.norm_calls += 1
            self.normalised.add(_signature(out))
        if func in SOFTMAXES or func in EXPS:
            x = args[0] if args else kwargs.get("input")
            if isinstance(x, torch.Tensor) and x.dim() >= 2 and x.shape[-2:] == (T, T):
                self._fit_scale(x)
        if func in SCALARS and len(args) >= 2:
            a, b = args[0], args[1]
            tensor, other = (a, b) if isinstance(a, torch.Tensor) else (b, a)
            if (isinstance(tensor, torch.Tensor) and tensor.dim() >= 2
                    and tensor.shape[-2] == T and tensor.shape[-1] != T
                    and _scalar(other) not in (None, 1.0)):
                self.prescaled.add(int(tensor.shape[-1]))
        if not isinstance(out, torch.Tensor) or not out.is_floating_point() or out.dim() < 2:
            return
        if out.shape[-2:] == (T, T):
            if func in PRODUCTS:
                self.products.append((out.detach().clone(), self._contraction(func, args)))
            self._see_map(out)
        if out.shape[-1] == self.C and out.shape[-2] == T:
            rms = out.detach().double().pow(2).mean(-1).sqrt()
            if bool(((rms - 1).abs() < 0.05).all()):
                self.normalised.add(_signature(out))
        if out.shape[-1] == self.V and out.shape[-2] == T and func in PRODUCTS | {F.linear}:
            x = args[0]
            if func is torch.einsum:  # the operand that brings the n_embd channels
                ops = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else args[1:]
                x = next((o for o in ops if o.dim() >= 2 and o.shape[-2] == T), None)
            if isinstance(x, torch.Tensor) and x.shape[-1] == self.C:
                self.output_inputs.append(x.detach().clone())

    def _see_map(self, out: torch.Tensor) -> None:
        x = out.detach().double().reshape(-1, self.T, self.T)
        if not bool(torch.isfinite(x).all()) or float(x.min()) < -1e-6:
            return
        rows = (x.sum(-1) - 1).abs().max() < 1e-4
        cols = (x.sum(-2) - 1).abs().max() < 1e-4
        for m in x:
            if rows and not cols:
                self.keys_maps.add(_signature(m))
            elif cols and not rows:
                self.query_maps.add(_signature(m))

    @staticmethod
    def _contraction(func, args) -> int:
        if func is torch.einsum:
            spec, *ops = args
            ops = ops[0] if len(ops) == 1 and isinstance(ops[0], (list, tuple)) else ops
            ins, _, result = spec.replace(" ", "").partition("->")
            terms = ins.split(",")
            size = 1
            term = terms[0].replace("...", "")
            for letter in set(term) & set(terms[1]) - set(result):
                size *= ops[0].shape[term.index(letter) - len(term)]  # from the right: "..."
            return size
        return int(args[0].shape[-1])

    def _fit_scale(self, x: torch.Tensor) -> None:
        """x (the softmax's input) = c * raw + per-row constant, on the entries not masked out."""
        x = x.detach().double()
        for raw, d in reversed(self.products[-8:]):
            if raw.shape != x.shape:
                continue
            r = raw.double()
            keep = torch.isfinite(x) & (x.abs() < 1e4)
            if int(keep.sum()) < x.shape[-1] * 2:
                continue
            n = keep.sum(-1, keepdim=True).clamp(min=1)
            xc = torch.where(keep, x, 0.0)
            rc = torch.where(keep, r, 0.0)
            xc = torch.where(keep, xc - xc.sum(-1, keepdim=True) / n, 0.0)
            rc = torch.where(keep, rc - rc.sum(-1, keepdim=True) / n, 0.0)
            denom = float((rc * rc).sum())
            if denom <= 0:
                continue
            c = float((xc * rc).sum()) / denom
            resid = float(((xc - c * rc) ** 2).sum()) / max(float((xc * xc).sum()), 1e-30)
            if resid < 1e-6:
                self.scales.append((c, d))
                return

    # -- summaries ---------------------------------------------------------------------------
    def maps(self) -> int:
        return len(self.keys_maps) + len(self.query_maps) + self.fused_maps

    def is_normalised(self, x: torch.Tensor) -> bool:
        """x came out of a norm function, or every row has RMS 1 (a hand-written norm)."""
        return _signature(x) in self.normalised or self.unit_rms_rows(x) < 0.05

    def unit_rms_rows(self, x: torch.Tensor) -> float:
        """How far the least normalised row of x is from RMS 1 (0 for a LayerNorm output)."""
        rms = x.double().pow(2).mean(-1).sqrt()
        return float((rms - 1).abs().max())


def describe_scale(c: float, head_size: int, n_embd: int) -> str | None:
    """The name of a known wrong scale, or None when c is 1/sqrt(head_size)."""
    def near(a: float, b: float) -> bool:
        return abs(a - b) <= 0.03 * abs(b)

    if near(c, head_size ** -0.5):
        return None
    if near(c, 1.0):
        return "not scaled"
    if near(c, 1.0 / head_size):
        return f"divided by head_size ({head_size}), not by its square root"
    if n_embd != head_size and near(c, n_embd ** -0.5):
        return (f"scaled by 1/sqrt(n_embd) = 1/sqrt({n_embd}), not 1/sqrt(head_size) = "
                f"1/sqrt({head_size})")
    if near(c, math.sqrt(head_size)):
        return "multiplied by sqrt(head_size) instead of divided"
    return "unknown"
