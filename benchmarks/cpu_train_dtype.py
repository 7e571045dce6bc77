"""A training step of the transformer lab's "cpu" preset in float32 against bfloat16, side by side.

    python benchmarks/cpu_train_dtype.py [--steps 6] [--rounds 3] [--threads 2]

bf16 means what the preset asked for before `bf16_is_fast` decided it: autocast for forward and
backward, and Muon's Newton-Schulz iteration in bf16. float32 is what the trainer now runs on a
CPU whose oneDNN has no bf16 (an AVX2-only CPU). The two alternate, a fresh model each time;
the table gives each round's milliseconds per step (evaluation excluded) and the median ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from zero2vllm.labs.transformer.reference import train  # noqa: E402


def step_ms(data, bf16: bool, steps: int) -> float:
    fast = train.bf16_is_fast
    train.bf16_is_fast = lambda device: bf16  # force the choice both ways
    try:
        cfg = train.preset("cpu", max_steps=steps, eval_from=10**9, eval_every=10**9)
        cfg.bf16 = bf16
        t0 = time.perf_counter()
        result = train.train(cfg, data=data)
        return (time.perf_counter() - t0 - result.eval_seconds) / steps * 1e3
    finally:
        train.bf16_is_fast = fast


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.steps < 1 or args.rounds < 1 or args.threads < 1:
        ap.error("--steps, --rounds and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    data = train.load_data()
    print(f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, "
          f"oneDNN bf16: {train.bf16_is_fast('cpu')}, {args.threads} threads, {args.steps} steps a run")
    step_ms(data, False, 1), step_ms(data, True, 1)  # warm-up: first allocations, oneDNN's kernels
    rows = []
    for r in range(args.rounds):
        rows.append((r + 1, step_ms(data, False, args.steps), step_ms(data, True, args.steps)))
    print("| round | float32 ms/step | bf16 ms/step | bf16 / float32 |")
    print("|---|---|---|---|")
    for r, f32, bf in rows:
        print(f"| {r} | {f32:.0f} | {bf:.0f} | {bf / f32:.2f}x |")
    print(f"median bf16 / float32: {statistics.median(b / f for _, f, b in rows):.2f}x")


if __name__ == "__main__":
    main()
