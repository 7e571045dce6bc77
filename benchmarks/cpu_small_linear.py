"""A decode step's matmuls alone: oneDNN's prepacked kernel against the engine's C++ few-row one.

    PYTHONPATH=src python benchmarks/cpu_small_linear.py [--rows 16] [--rounds 3]

SmolLM2-135M's 30 layers of matmul shapes (qkv 576->960, gate_up 576->3072, down 1536->576, o
576->576: 425 MB of fp32 weights, each its own tensor so they come from DRAM as in a real step),
run back to back with 16 rows (a decode step of 16 sequences). Prints the median of 7 passes for
each kernel, alternating the two kernels `--rounds` times, and the weight bytes read per second.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from zero2vllm.engine.kernels.cpu_kernels import load_cpu_small_linear, panels


def median_s(fns, xs) -> float:
    for _ in range(2):
        for f, x in zip(fns, xs):
            f(x)
    times = []
    for _ in range(7):
        start = time.perf_counter()
        for f, x in zip(fns, xs):
            f(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    small = load_cpu_small_linear()
    if small is None:
        raise SystemExit("the C++ kernel did not load (see above)")
    torch.manual_seed(0)
    shapes = [(960, 576), (3072, 576), (576, 1536), (576, 576)] * 30  # (N, K) of one layer, 30 times
    weights = [torch.randn(n, k) for n, k in shapes]
    nbytes = sum(w.numel() * 4 for w in weights)
    inputs = {k: torch.randn(args.rows, k) for k in (576, 1536)}
    xs = [inputs[k] for _, k in shapes]
    onednn = [lambda x, p=torch.ops.mkldnn._reorder_linear_weight(w, 16): torch.ops.mkldnn._linear_pointwise(
        x, p, None, "none", [], "") for w in weights]
    ours = [lambda x, p=panels(w), n=w.shape[0]: small(x, p, n) for w in weights]
    print(f"{args.rows} rows, {nbytes / 1e6:.0f} MB of weights, {torch.get_num_threads()} threads")
    print("round  oneDNN ms  GB/s   C++ ms  GB/s   ratio")
    for r in range(args.rounds):
        a, b = median_s(onednn, xs), median_s(ours, xs)
        print(f"{r + 1:5}  {a * 1e3:9.1f}  {nbytes / a / 1e9:4.1f}  {b * 1e3:7.1f}  {nbytes / b / 1e9:4.1f}  {a / b:5.2f}x")


if __name__ == "__main__":
    main()
