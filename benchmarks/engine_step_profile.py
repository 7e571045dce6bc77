"""Where whole engine steps go, as the engine runs them (not part by part): for finding what the
step-time breakdown does not show.

    PYTHONPATH=src python benchmarks/engine_step_profile.py --device cuda

1. 256 x (128 + 128) at once: each decode-only step's wall time against its CUDA graph's GPU time
   (CUDA events around the replay), plain and with async scheduling, alternated; then the same run
   under cProfile (the Python functions with the most own time).
2. Mixed prompts arriving a few at a time (as in engine_mixed.py): torch.profiler over steps that
   carry prompt tokens, by CPU time and by GPU time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from engine_gpu import LLAMA_1B, TINY  # noqa: E402

from zero2vllm.engine import EngineConfig, LLMEngine, ModelConfig, SamplingParams  # noqa: E402

import torch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args()
    dev = "cpu" if args.tiny else args.device
    cuda = dev.startswith("cuda")
    shape = TINY if args.tiny else LLAMA_1B
    engine = LLMEngine(EngineConfig(model="", model_config=ModelConfig(**shape), device=dev,
                                    dtype="bfloat16" if cuda else "float32", max_model_len=1600, max_num_seqs=256,
                                    max_num_batched_tokens=8192, kv_cache_gb=16 if cuda else 0.05),
                       load_tokenizer=False)
    gen = torch.Generator().manual_seed(0)
    n, length = (256, 128) if cuda else (8, 16)

    def prompts(k, size):
        return [torch.randint(1, shape["vocab_size"], (size,), generator=gen).tolist() for _ in range(k)]

    params = SamplingParams(max_tokens=length, ignore_eos=True)
    engine.generate(prompts(8, length), SamplingParams(max_tokens=8, ignore_eos=True))
    # 1a. each decode-only step's wall time against its CUDA graph's own GPU time (events around
    # the replay), with the step before read first (plain) and after the launch (async scheduling)
    if cuda:
        replays = []  # (start event, end event) per replay

        def timed(graph):
            def replay():
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                graph.replay()
                b.record()
                replays.append((a, b))
            return type("Timed", (), {"replay": staticmethod(replay)})()

        engine.runner.graphs = {bs: timed(g) for bs, g in engine.runner.graphs.items()}
        for mode in ("plain", "async", "plain", "async"):
            engine.async_scheduling = mode == "async"
            for p in prompts(n, length):
                engine.add_request(p, params)
            walls, replays[:] = [], []
            start = time.perf_counter()
            while engine.has_work():
                t = time.perf_counter()
                engine.step()
                if all(k == 1 for _, k in engine.last_batch.items) and len(engine.last_batch.items) == n:
                    walls.append((time.perf_counter() - t) * 1e3)
            total = time.perf_counter() - start
            torch.cuda.synchronize()
            gpus = [a.elapsed_time(b) for a, b in replays]
            print(f"{mode}: {n} x ({length} + {length}) in {total * 1e3:.0f} ms; {len(walls)} decode-only steps, "
                  f"wall median {statistics.median(walls):.2f} ms; {len(gpus)} graph replays, GPU median "
                  f"{statistics.median(gpus):.2f} ms (min {min(gpus):.2f}, max {max(gpus):.2f})", flush=True)
        engine.async_scheduling = True
    # 1b. the same run under cProfile
    for p in prompts(n, length):
        engine.add_request(p, params)
    prof = cProfile.Profile()
    prof.enable()
    while engine.has_work():
        engine.step()
    prof.disable()
    print("\n256 x (128 + 128) under cProfile, by own time:")
    pstats.Stats(prof).sort_stats("tottime").print_stats(22)
    # 2. prompt steps beside running decodes
    for p in prompts(n // 2, length):
        engine.add_request(p, SamplingParams(max_tokens=4 * length, ignore_eos=True))
    for _ in range(5):
        engine.step()
    sizes = torch.randint(32, 1024, (6,), generator=gen).tolist() if cuda else [9, 12, 5, 7, 11, 6]
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    engine.add_request(prompts(1, sizes[0])[0], params)
    engine.step()  # a first prompt step outside the profile
    with profile(activities=acts) as prof2:
        for size in sizes[1:]:
            engine.add_request(prompts(1, size)[0], params)
            t = time.perf_counter()
            engine.step()
            print(f"step with a {size}-token prompt and {len(engine.last_batch.items) - 1} decodes: "
                  f"{(time.perf_counter() - t) * 1e3:.1f} ms (profiled)")
    for key in ("self_cpu_time_total",) + (("self_cuda_time_total",) if cuda else ()):
        print(f"\nsteps with prompt tokens, by {key}:")
        print(prof2.key_averages().table(sort_by=key, row_limit=14, max_name_column_width=55))


if __name__ == "__main__":
    main()
