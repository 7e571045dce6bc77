"""Offline throughput of zero2vllm's engine (no HTTP): N requests submitted at once, run to the end.

    PYTHONPATH=src python benchmarks/engine_offline.py [--model smollm2|FOLDER] [--seqs 1,4,16]
        [--input-len 128] [--output-len 64] [--threads 2] [--profile]

For each concurrency N it runs N requests of `input-len` random token ids and `output-len`
generated tokens (ignore_eos, like `vllm bench`), and prints output tokens/s, the time per step,
and the KV cache utilisation against a contiguous per-request allocation.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--seqs", default="1,4,16")
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--max-num-batched-tokens", type=int, default=1024)
    ap.add_argument("--profile", action="store_true", help="print torch.profiler's top ops for the last run")
    args = ap.parse_args()

    from zero2vllm.engine import EngineConfig, LLMEngine, SamplingParams  # first: it sets OMP_WAIT_POLICY
    from zero2vllm.models import ensure_model_dir

    import torch

    torch.set_num_threads(args.threads)
    folder = ensure_model_dir(args.model)
    t0 = time.perf_counter()
    engine = LLMEngine(EngineConfig(model=str(folder), num_threads=args.threads, block_size=args.block_size,
                                    max_num_batched_tokens=args.max_num_batched_tokens), load_tokenizer=False)
    print(f"loaded {folder.name} in {time.perf_counter() - t0:.1f} s; {engine.runner.num_blocks} KV blocks "
          f"of {args.block_size}; torch threads {torch.get_num_threads()}")
    rng = random.Random(0)
    vocab = engine.config.model_config.vocab_size
    low, high = min(100, vocab // 2), min(10_000, vocab)  # ordinary token ids, like z2v bench's
    params = SamplingParams(max_tokens=args.output_len, ignore_eos=True)
    engine.generate([[rng.randrange(low, high) for _ in range(16)]], SamplingParams(max_tokens=4))  # warm-up

    print(f"{'seqs':>5} {'out tok/s':>10} {'total tok/s':>12} {'wall s':>7} {'steps':>6} {'ms/step':>8} "
          f"{'KV util':>8} {'contig@max_len':>15} {'contig@prompt+max':>18}")
    for n in [int(x) for x in args.seqs.split(",")]:
        prompts = [[rng.randrange(low, high) for _ in range(args.input_len)] for _ in range(n)]
        engine.stats = type(engine.stats)()
        prof = None
        if args.profile:
            from torch.profiler import profile

            prof = profile()
            prof.__enter__()
        start = time.perf_counter()
        outs = engine.generate(prompts, params)
        wall = time.perf_counter() - start
        if prof:
            prof.__exit__(None, None, None)
        out_tokens = sum(len(o["token_ids"]) for o in outs)
        s, kv = engine.stats, engine.stats.kv_summary()
        print(f"{n:>5} {out_tokens / wall:>10.1f} {(out_tokens + n * args.input_len) / wall:>12.1f} {wall:>7.2f} "
              f"{s.steps:>6} {1e3 * s.busy_seconds / s.steps:>8.1f} {kv['paged']:>8.1%} "
              f"{kv['contiguous_max_len']:>15.1%} {kv['contiguous_prompt_plus_max_tokens']:>18.1%}")
    if prof:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
