"""The Triton decode attention kernel alone: error against the PyTorch path, time, and achieved
memory bandwidth (bytes of K and V read once), at several batch sizes and context lengths.

    PYTHONPATH=src python benchmarks/triton_decode_bench.py [--baseline OLD_KERNEL.py]

With --baseline, an older version of engine/kernels/triton_attention.py is timed beside the
current one in the same process (Llama-3.2-1B's attention shape: 32 heads, 8 KV heads, 64 dims).
"us" is `do_bench`'s median of one call, launch included; "us in a graph" is one call's share of
a CUDA graph of 16 calls in a row, as the engine's decode graphs run it.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402
import triton  # noqa: E402

from zero2vllm.engine.attention import build_group, gather_attention  # noqa: E402
from zero2vllm.engine.kernels import triton_attention  # noqa: E402


def load(path: str):
    spec = importlib.util.spec_from_file_location("old_kernel", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline")
    ap.add_argument("--dtype", default="bfloat16")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    kernels = {"current": triton_attention.paged_decode}
    if args.baseline:
        kernels = {"baseline": load(args.baseline).paged_decode, **kernels}
    heads, kv_heads, dim, bs_tok = 32, 8, 64, 16
    gen = torch.Generator(device="cpu").manual_seed(0)
    print("| batch | context | kernel | max err vs PyTorch | us | us in a graph | GB/s (graph) |")
    print("|---|---|---|---|---|---|---|")
    for batch, ctx in ((1, 192), (1, 512), (1, 2048), (4, 192), (16, 512), (64, 192), (256, 192), (256, 1024)):
        blocks_per = -(-ctx // bs_tok)
        num_blocks = batch * blocks_per + 1
        cache = torch.randn(num_blocks, bs_tok, 2, kv_heads, dim, generator=gen).to("cuda", dtype)
        perm = torch.randperm(num_blocks - 1, generator=gen).tolist()  # blocks out of order
        tables = [perm[i * blocks_per:(i + 1) * blocks_per] for i in range(batch)]
        group = build_group(tables, [ctx - 1] * batch, [1] * batch, bs_tok, num_blocks - 1, "cuda", decode=True)
        q = torch.randn(batch, heads, dim, generator=gen).to("cuda", dtype)
        ref = gather_attention(q, cache, group).float()
        nbytes = batch * ctx * kv_heads * dim * 2 * cache.element_size()
        for name, kernel in kernels.items():
            err = (kernel(q, cache, group).flatten(1).float() - ref).abs().max().item()
            ms = triton.testing.do_bench(lambda: kernel(q, cache, group), return_mode="median")
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for _ in range(16):
                    kernel(q, cache, group)
            in_graph = triton.testing.do_bench(graph.replay, return_mode="median") / 16
            print(f"| {batch} | {ctx} | {name} | {err:.2e} | {ms * 1e3:.1f} | {in_graph * 1e3:.1f} "
                  f"| {nbytes / in_graph / 1e6:,.0f} |")


if __name__ == "__main__":
    main()
