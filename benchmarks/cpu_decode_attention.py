"""The C++ decode attention kernel alone, as a decode step calls it: 30 layers, 16 sequences.

    PYTHONPATH=src python benchmarks/cpu_decode_attention.py [--context 174] [--library FILE.so]

Each layer has its own KV pool (SmolLM2's shape: 3 KV heads of 64, 9 query heads, 16-token
blocks), and the sequences' blocks are scattered through it, so K/V come from DRAM as in a real
step. Prints the median of 15 passes over the 30 layers and the K/V bytes read per second. With
--library, a kernel built elsewhere (the same `paged_decode` C function) is timed instead: build
a variant, then run this with and without it, alternating, to compare them side by side.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch

from zero2vllm.engine.attention import AttnGroup, decode_kernel_error
from zero2vllm.engine.kernels.cpu_kernels import PagedDecodeKernel, build


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--context", type=int, default=174, help="tokens each sequence attends to")
    ap.add_argument("--library", type=Path, default=None, help="a compiled kernel to time instead of ours")
    args = ap.parse_args()
    seqs, heads, kv_heads, d, block_size, layers = 16, 9, 3, 64, 16, 30
    per_seq = -(-args.context // block_size)
    pools = [torch.randn(seqs * per_seq * 2, block_size, 2, kv_heads, d) for _ in range(layers)]
    blocks = list(range(seqs * per_seq * 2))
    random.Random(0).shuffle(blocks)
    tables = torch.tensor([blocks[s * per_seq:(s + 1) * per_seq] for s in range(seqs)], dtype=torch.int64)
    group = AttnGroup(tables, torch.full((seqs,), args.context, dtype=torch.int64), None)
    kernel = PagedDecodeKernel(args.library or build())
    err = decode_kernel_error(kernel, pools[0], heads)
    q = torch.randn(seqs, heads, d)
    times = []
    for i in range(18):
        start = time.perf_counter()
        for pool in pools:
            kernel(q, pool, group)
        if i >= 3:  # the first passes warm the threads up
            times.append(time.perf_counter() - start)
    ms = statistics.median(times) * 1e3
    nbytes = seqs * args.context * 2 * kv_heads * d * 4 * layers
    print(f"{args.library or 'our kernel'}: context {args.context}, {ms:.2f} ms for {layers} layers, "
          f"{nbytes / 1e6:.0f} MB of K/V at {nbytes / ms / 1e6:.1f} GB/s ({torch.get_num_threads()} threads; "
          f"largest difference from the PyTorch path {err:.1e})")


if __name__ == "__main__":
    main()
