"""What the CPU's memory can stream, against what a decode step's matmuls get from it.

    python benchmarks/cpu_memory_bandwidth.py [--threads 2]

A plain read (torch.sum over 1 GiB) and a copy give the memory's speed; then oneDNN matmuls of 16
rows (a decode step's batch) against 60 different prepacked [3072, 576] weights (7 MB each, as
SmolLM2's gate_up: more than the caches hold, so they come from DRAM), and SmolLM2's LM head
(49,152 x 576) alone. GB/s counts the weight bytes read. Last, what the cores can compute: a
prompt step's matmul (2,048 rows against one of those weights), in GFLOPS. That line tells two
machines of the same name apart: the 2-core machine was not always the same CPU (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import time

import torch


def seconds(fn, reps: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    torch.set_num_threads(ap.parse_args().threads)
    x = torch.randn(1 << 28)  # 1 GiB of fp32
    y = torch.empty_like(x)
    linear = lambda h, w: torch.ops.mkldnn._linear_pointwise(h, w, None, "none", [], "")  # noqa: E731
    pack = lambda w: torch.ops.mkldnn._reorder_linear_weight(w, 16)  # noqa: E731
    h = torch.randn(16, 576)
    weights = [pack(torch.randn(3072, 576)) for _ in range(60)]
    head = pack(torch.randn(49152, 576))
    rows = [("read (torch.sum, 1 GiB)", x.numel() * 4, seconds(x.sum, 5)),
            ("copy (1 GiB each way)", 2 * x.numel() * 4, seconds(lambda: y.copy_(x), 5)),
            ("16-row matmuls, 60 x 7 MB weights", 60 * 3072 * 576 * 4,
             seconds(lambda: [linear(h, w) for w in weights], 3)),
            ("16-row LM head, 113 MB", 49152 * 576 * 4, seconds(lambda: linear(h, head), 10))]
    print(f"{'what':<36} {'GB/s':>6} {'ms':>8}")
    for label, nbytes, s in rows:
        print(f"{label:<36} {nbytes / s / 1e9:6.1f} {s * 1000:8.2f}")
    prompt = torch.randn(2048, 576)
    s = seconds(lambda: linear(prompt, weights[0]), 5)
    print(f"{'2,048-row matmul (compute), GFLOPS':<36} {2 * 2048 * 576 * 3072 / s / 1e9:6.1f} {s * 1000:8.2f}")


if __name__ == "__main__":
    main()
