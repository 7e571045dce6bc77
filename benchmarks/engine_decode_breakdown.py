"""Where a CPU decode step of the engine goes: time the model's forward with one part switched off.

    PYTHONPATH=src python benchmarks/engine_decode_breakdown.py [--huge-pages]

16 sequences of 150 random prompt tokens are prefilled and decoded 20 steps, then one decode
batch is run again and again (median of 15 forwards) as it is (decode attention by the C++
kernel, cpu_kernels.py), with the PyTorch gather + SDPA attention instead, with the PyTorch
elementwise ops instead of their C++ versions (model.py's @fused), with oneDNN's matmuls instead
of the C++ few-row ones (csrc/small_linear.cpp), and with attention
or the KV write replaced by a no-op. The differences say what each part costs; the outputs of
the switched-off runs are wrong, only their time matters. SmolLM2-135M, fp32.
"""

from __future__ import annotations

import random
import statistics
import sys
import time

import torch

from zero2vllm.engine import EngineConfig, LLMEngine, SamplingParams
from zero2vllm.engine import model as M
from zero2vllm.models import ensure_model_dir


def main() -> None:
    huge = "--huge-pages" in sys.argv[1:]  # weights and KV on 2 MB pages, as `z2v serve engine` has them
    engine = LLMEngine(EngineConfig(model=str(ensure_model_dir("smollm2")), huge_pages=huge))
    rng = random.Random(0)
    for _ in range(16):
        engine.add_request([rng.randrange(100, 40000) for _ in range(150)], SamplingParams(max_tokens=64, ignore_eos=True))
    while engine.last_batch is None or engine.last_batch.num_tokens > 16:
        engine.step()
    for _ in range(20):
        engine.step()
    runner = engine.runner
    ids, pos, ctx, _, _ = runner.prepare(engine.scheduler.schedule())

    def ms(fn, n=15) -> float:
        with torch.inference_mode():
            for _ in range(3):
                fn()
            times = []
            for _ in range(n):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
        return statistics.median(times) * 1000

    forward = lambda: runner.model(ids, pos, ctx)  # noqa: E731
    ms(forward, 30)  # warm-up
    rows = [("whole forward (30 layers)", ms(forward))]
    kernel, ctx.decode_kernel = ctx.decode_kernel, None  # the C++ kernel, if it loaded
    rows.append(("with gather + SDPA attention", ms(forward)))
    ctx.decode_kernel = kernel
    fused = dict(M.CPU_KERNELS)
    M.CPU_KERNELS.clear()
    rows.append(("with PyTorch elementwise ops", ms(forward)))
    M.CPU_KERNELS.update(fused)
    linears = [m for m in runner.model.modules() if getattr(m, "small_linear", None) is not None]
    small = [m.small_linear for m in linears]
    for m in linears:
        m.small_linear = None  # back to oneDNN's prepacked matmul
    rows.append(("with oneDNN matmuls", ms(forward)))
    for m, fn in zip(linears, small):
        m.small_linear = fn
    switches = [("without attention", "paged_attention", lambda q, kv, c: q.reshape(q.shape[0], -1)),
                ("without the KV write", "store_kv", lambda *a: None)]
    for label, name, stub in switches:  # the names model.py calls
        real = getattr(M, name)
        setattr(M, name, stub)
        try:
            rows.append((label, ms(forward)))
        finally:
            setattr(M, name, real)
    rows.append(("whole forward, again", ms(forward)))  # the first timing may still be warming up
    hidden = torch.randn(16, runner.model.cfg.hidden_size)
    rows.append(("LM head alone (16 rows)", ms(lambda: runner.model.compute_logits(hidden))))
    print(f"decode batch: {ids.shape[0]} sequences, context {ctx.decode.context_lens.max().item()} tokens, "
          f"decode attention: {'C++ kernel' if kernel else 'PyTorch (the kernel did not load)'}, "
          f"C++ elementwise ops: {len(fused)} of 3, C++ few-row matmuls: {len(linears)} layers, "
          f"{'2 MB' if huge else '4 KB'} pages")
    print(f"{'what':<28} {'ms':>7}")
    for label, value in rows:
        print(f"{label:<28} {value:7.2f}")


if __name__ == "__main__":
    main()
