"""The C++ decode attention kernel for the CPU (csrc/paged_decode.cpp): build once, load, check.

PyTorch has no paged attention, so the PyTorch path (attention.py) gathers each decode batch's
blocks into a padded copy and calls SDPA. The kernel reads K/V in place instead, in one pass with
an online softmax, prefetching the next block while it works on this one. What it saves, in a
decode step and through HTTP, is measured in docs/benchmarks.md (benchmarks/engine_decode_breakdown.py,
benchmarks/engine_cpu_ab.sh).

It is compiled with the machine's g++ against PyTorch's headers (at::parallel_for runs it on
PyTorch's own threads) into $ZERO2VLLM_KERNEL_CACHE, else the user's cache directory; the file
name hashes the source, the flags, PyTorch's version and the CPU's features, so it is built once,
and again only when one of them changes. It is loaded with ctypes, and used only if it agrees with the
PyTorch path on random blocks; otherwise the engine says why on stderr and keeps the PyTorch path.
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

SOURCE = Path(__file__).parent / "csrc" / "paged_decode.cpp"
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
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode() + torch.__version__.encode()
                         + cpu_features().encode()).hexdigest()[:16]
    target = cache_dir() / f"paged_decode-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    torch_lib = library_paths()[0]
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        cmd = [compiler, *FLAGS, *(f"-I{p}" for p in include_paths()), str(SOURCE), "-o", str(out),
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
        if kv_cache.dtype != torch.float32 or num_heads > 64 or head_dim > 128 or block_size > 64:
            raise ValueError("it handles float32, at most 64 heads of at most 128 dims, blocks of at most 64 tokens")
        kernel = PagedDecodeKernel(build())
        err = decode_kernel_error(kernel, kv_cache, num_heads)
        if not err < 1e-4:
            raise ValueError(f"it differs from the PyTorch path by {err:.3g}")
    except Exception as exc:  # a kernel that does not build or disagrees must not stop the engine
        print(f"engine: C++ decode attention unusable ({exc}); using the PyTorch gather path", file=sys.stderr)
        return None
    return kernel
