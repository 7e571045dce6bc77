"""The C++ kernels for the CPU (csrc/): build once, load, and check against the PyTorch path.

- Decode attention (csrc/paged_decode.cpp). PyTorch has no paged attention, so the PyTorch path
  (attention.py) gathers each decode batch's blocks into a padded copy and calls SDPA. The kernel
  reads K/V in place, in one pass with an online softmax, prefetching the next block.
- The elementwise steps between the matmuls (csrc/fused_ops.cpp): model.py's `@fused` functions,
  each one pass instead of 3-10 PyTorch ops (on a GPU, torch.compile fuses them; on the CPU its
  compiled calls cost more per decode step than they save).
- The matmuls of a decode step (csrc/small_linear.cpp): at most 16 rows, where each weight streams
  in from memory once per step; from panels of 16 output columns, faster than oneDNN there.
What each saves, per step and through HTTP, is in docs/benchmarks.md.

They are compiled with the machine's g++ against PyTorch's headers (at::parallel_for runs them on
PyTorch's own threads) into $ZERO2VLLM_KERNEL_CACHE, else the user's cache directory; the file
name hashes the sources, the flags, PyTorch's version and the CPU's features, so it is built once,
and again only when one of them changes. It is loaded with ctypes, and each kernel is used only if
it agrees with the PyTorch path on random inputs; otherwise the engine says why on stderr and
keeps the PyTorch path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from ..attention import AttnGroup, decode_kernel_error

SOURCES = sorted((Path(__file__).parent / "csrc").glob("*.cpp"))
FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-shared", "-fPIC", "-std=c++17"]
ENV_CACHE = "ZERO2VLLM_KERNEL_CACHE"


def cache_dir() -> Path:
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("zero2vllm", appauthor=False)) / "kernels"


def cpu_features() -> str:
    """What -march=native compiles for: a library built on another CPU could crash on this one."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), platform.machine())
    except OSError:
        return platform.machine()


def build() -> Path:
    """The compiled library, built now if this source, flags and PyTorch have none yet."""
    from torch.utils.cpp_extension import include_paths, library_paths

    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise RuntimeError("no C++ compiler (apt-get install g++)")
    key = hashlib.sha256(b"".join(f.read_bytes() for f in SOURCES) + " ".join(FLAGS).encode()
                         + torch.__version__.encode() + cpu_features().encode()).hexdigest()[:16]
    target = cache_dir() / f"cpu_kernels-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    torch_lib = library_paths()[0]
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        cmd = [compiler, *FLAGS, *(f"-I{p}" for p in include_paths()), *map(str, SOURCES), "-o", str(out),
               f"-L{torch_lib}", "-lc10", "-ltorch_cpu", "-lmvec", f"-Wl,-rpath,{torch_lib}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"g++ failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
        os.replace(out, target)  # atomic: another process building the same file sees all or nothing
    return target


class PagedDecodeKernel:
    """Callable like the Triton kernel: (q [seqs, heads, d], kv_cache, decode group) -> [seqs, heads, d]."""

    def __init__(self, path: Path):
        self.fn = ctypes.CDLL(str(path)).paged_decode
        self.fn.restype = None
        self.fn.argtypes = ([ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64] + [ctypes.c_void_p] * 3
                            + [ctypes.c_int] * 6 + [ctypes.c_float])

    def __call__(self, q: torch.Tensor, kv_cache: torch.Tensor, group: AttnGroup) -> torch.Tensor:
        seqs, heads, d = q.shape
        _, block_size, _, kv_heads, _ = kv_cache.shape
        tables, lens = group.block_tables, group.context_lens
        assert q.stride(1) == d and q.stride(2) == 1 and kv_cache.is_contiguous()
        assert tables.dtype == lens.dtype == torch.int64 and tables.is_contiguous()
        out = torch.empty(seqs, heads, d)
        self.fn(out.data_ptr(), q.data_ptr(), q.stride(0), kv_cache.data_ptr(), tables.data_ptr(), lens.data_ptr(),
                seqs, tables.shape[1], heads, kv_heads, d, block_size, d ** -0.5)
        return out


def load_cpu_decode_kernel(kv_cache: torch.Tensor, num_heads: int) -> PagedDecodeKernel | None:
    """The C++ kernel if it builds and agrees with the PyTorch path here, else None (and why, on stderr)."""
    try:
        _, block_size, _, kv_heads, head_dim = kv_cache.shape
        if (kv_cache.dtype != torch.float32 or num_heads > 64 or head_dim > 128 or head_dim % 8
                or block_size > 64):
            raise ValueError("it handles float32, at most 64 heads of 8, 16, ... 128 dims, blocks of at most 64 tokens")
        kernel = PagedDecodeKernel(build())
        err = decode_kernel_error(kernel, kv_cache, num_heads)
        if not err < 1e-4:
            raise ValueError(f"it differs from the PyTorch path by {err:.3g}")
    except Exception as exc:  # a kernel that does not build or disagrees must not stop the engine
        print(f"engine: C++ decode attention unusable ({exc}); using the PyTorch gather path", file=sys.stderr)
        return None
    return kernel


def fused_ops(path: Path) -> dict:
    """model.py's @fused functions in C++, by name: same arguments, same results (fp32, rows contiguous)."""
    lib, P, I64, I = ctypes.CDLL(str(path)), ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.add_rms_norm.argtypes = [P] * 5 + [I64, I64, ctypes.c_float]
    lib.silu_mul.argtypes, lib.rope_qkv.argtypes = [P, P, I64, I64], [P] * 5 + [I64, I, I, I]
    ptr = lambda *ts: [t.data_ptr() for t in ts]  # noqa: E731

    def add_rms_norm(x, y, weight, eps):
        x, y, n = x.contiguous(), y.contiguous(), x.shape[-1]
        res, out = torch.empty_like(x), torch.empty_like(x)
        lib.add_rms_norm(*ptr(res, out, x, y, weight), x.numel() // n, n, eps)
        return res, out

    def silu_mul(gate_up):
        gate_up, n = gate_up.contiguous(), gate_up.shape[-1] // 2
        out = gate_up.new_empty(*gate_up.shape[:-1], n)
        lib.silu_mul(*ptr(out, gate_up), out.numel() // n, n)
        return out

    def rope_qkv(qkv, cos, sin, h, kvh, d):  # cos, sin: [rows, 1, d], a row per token
        qkv, cos, sin, rows = qkv.contiguous(), cos.contiguous(), sin.contiguous(), qkv.shape[0]
        assert cos.numel() == sin.numel() == rows * d
        q, kv = qkv.new_empty(rows, h, d), qkv.new_empty(rows, 2, kvh, d)
        lib.rope_qkv(*ptr(q, kv, qkv, cos, sin), rows, h, kvh, d)
        return q, kv

    return {"add_rms_norm": add_rms_norm, "silu_mul": silu_mul, "rope_qkv": rope_qkv}


def load_cpu_fused_ops() -> dict:
    """The C++ @fused ops if they build and agree with the PyTorch ones on random inputs (SiLU saturated
    too), else {} and why, on stderr: as for the attention kernel, slower without them, never wrong."""
    from .. import model

    try:
        ops, gen = fused_ops(build()), torch.Generator().manual_seed(0)
        rand = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
        cos, sin = model.rope_tables(model.ModelConfig(64, 48, 32, 1, 6, 2, 8), 40)
        pos = torch.randint(0, 40, (7,), generator=gen)
        for name, args in {"add_rms_norm": (rand(7, 48), rand(7, 48), rand(48), 1e-5), "silu_mul": (rand(7, 64) * 30,),
                           "rope_qkv": (rand(7, 80), cos[pos].unsqueeze(1), sin[pos].unsqueeze(1), 6, 2, 8)}.items():
            got, want = ops[name](*args), getattr(model, name).python(*args)
            for g, w in zip(*((t,) if isinstance(t, torch.Tensor) else t for t in (got, want))):
                if not (g - w).abs().max() <= 1e-5 * w.abs().max():
                    raise ValueError(f"{name} differs from the PyTorch op by {(g - w).abs().max().item():.3g}")
    except Exception as exc:
        print(f"engine: C++ fused ops unusable ({exc}); using the PyTorch ops", file=sys.stderr)
        return {}
    return ops


def panels(weight: torch.Tensor) -> torch.Tensor:
    """W [N, K] as small_linear reads it: [N / 16, K, 16], 16 output columns side by side."""
    n, k = weight.shape
    return weight.detach().view(n // 16, 16, k).transpose(1, 2).contiguous()


def load_cpu_small_linear():
    """small_linear(x [M <= 16, K], panels, N) -> x @ W^T [M, N] if it builds and agrees with
    F.linear on random inputs (every row count from 1 to 16: each tile size is its own code), else
    None and why, on stderr."""
    try:
        fn = ctypes.CDLL(str(build())).small_linear
        fn.restype, fn.argtypes = None, [ctypes.c_void_p] * 3 + [ctypes.c_int] * 3

        def small_linear(x: torch.Tensor, w: torch.Tensor, n: int) -> torch.Tensor:
            x = x.contiguous()
            y = x.new_empty(x.shape[0], n)
            fn(y.data_ptr(), x.data_ptr(), w.data_ptr(), *x.shape, n)
            return y
        gen = torch.Generator().manual_seed(0)
        weight = torch.randn(48, 40, generator=gen)
        for rows in range(1, 17):
            x = torch.randn(rows, 40, generator=gen)
            got, want = small_linear(x, panels(weight), 48), torch.nn.functional.linear(x, weight)
            if not (got - want).abs().max() <= 1e-5 * want.abs().max():
                raise ValueError(f"it differs from F.linear by {(got - want).abs().max().item():.3g}")
    except Exception as exc:
        print(f"engine: C++ small-batch matmul unusable ({exc}); using oneDNN", file=sys.stderr)
        return None
    return small_linear
