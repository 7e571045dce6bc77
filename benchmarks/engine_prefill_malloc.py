"""A prompt step's time in the main thread and in a worker thread, with and without malloc tuning.

    PYTHONPATH=src python benchmarks/engine_prefill_malloc.py [--tokens 2048] [--rounds 3]

One 2048-token prefill (16 prompts of 128 random tokens, SmolLM2 fp32) is run again and again
(median of 5 forwards) in the main thread, as offline `generate` does, and in a worker thread, as
`z2v serve engine` does. Each setting runs in its own process, the processes alternating: with
`keep_freed_memory()` (what ModelRunner does on the CPU) and without it (glibc's defaults).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time


def measure(tokens: int, where: str, keep: bool) -> float:
    import random

    import torch

    from zero2vllm.engine import EngineConfig, LLMEngine, SamplingParams, model_runner
    from zero2vllm.models import ensure_model_dir

    if not keep:
        model_runner.keep_freed_memory = lambda: None
    engine = LLMEngine(EngineConfig(model=str(ensure_model_dir("smollm2")), max_num_batched_tokens=tokens))
    rng = random.Random(0)
    for _ in range(tokens // 128):
        engine.add_request([rng.randrange(100, 40000) for _ in range(128)], SamplingParams(max_tokens=1))
    runner = engine.runner
    ids, pos, ctx, _, _ = runner.prepare(engine.scheduler.schedule())
    times: list[float] = []

    def work():
        with torch.inference_mode():
            runner.model(ids, pos, ctx)  # warm-up
            for _ in range(5):
                start = time.perf_counter()
                runner.model(ids, pos, ctx)
                times.append(time.perf_counter() - start)

    if where == "thread":
        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
    else:
        work()
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", nargs=2, metavar=("WHERE", "KEEP"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(f"{measure(args.tokens, args.child[0], args.child[1] == 'keep'):.1f}")
        return
    variants = [(w, k) for w in ("main", "thread") for k in ("default", "keep")]
    results: dict = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            out = subprocess.run([sys.executable, __file__, "--tokens", str(args.tokens), "--child", *v],
                                 capture_output=True, text=True, check=True).stdout.split()[-1]
            results[v].append(float(out))
    print(f"{args.tokens}-token prefill forward, median of 5 per process, ms ({args.rounds} processes each)")
    print(f"{'thread':<8} {'malloc':<22} {'median':>8}   each")
    for (where, keep), ms in results.items():
        label = "keep_freed_memory()" if keep == "keep" else "glibc defaults"
        print(f"{where:<8} {label:<22} {statistics.median(ms):8.0f}   {', '.join(f'{x:.0f}' for x in ms)}")


if __name__ == "__main__":
    main()
