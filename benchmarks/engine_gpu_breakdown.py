"""Where one engine step goes on a GPU: the scheduler, building the inputs, the forward pass, the
LM head and sampling, and the bookkeeping after it, for steady decode at several batch sizes.

    PYTHONPATH=src python benchmarks/engine_gpu_breakdown.py --device cuda
    PYTHONPATH=src python benchmarks/engine_gpu_breakdown.py --tiny        # CPU smoke test

Decode steps replay one CUDA graph holding the forward pass, the LM head and the argmax, so on
those steps "forward" includes the LM head and "logits+sample" is reading the tokens back.
Each part is timed with the host clock after a device synchronize, so a part's time is its own
(this serialises what the engine may overlap: the sum is an upper bound of a real step). Then the
eager model (no CUDA graphs) is profiled for one decode step at the largest batch, to name the
kernels the forward pass spends its time in.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from engine_gpu import LLAMA_1B, TINY  # noqa: E402

from zero2vllm.engine import EngineConfig, LLMEngine, ModelConfig, SamplingParams  # noqa: E402

import torch  # noqa: E402

PARTS = ("schedule", "prepare", "forward", "logits+sample", "postprocess")


def timed_step(engine: LLMEngine, sync) -> dict[str, float]:
    """One engine step, part by part (the same calls as LLMEngine.step and ModelRunner.run)."""
    r, s, t = engine.runner, engine.scheduler, {}

    def mark(name, t0):
        sync()
        t[name] = (time.perf_counter() - t0) * 1e3
        return time.perf_counter()

    t0 = time.perf_counter()
    batch = s.schedule()
    t0 = mark("schedule", t0)
    seqs = [seq for seq, _ in batch.items]
    with torch.inference_mode():
        if r._fits_graph(seqs):
            r._write_inputs(seqs)  # decode: the inputs in one copy; forward, LM head and argmax in the graph
            t0 = mark("prepare", t0)
            r.graphs[min(b for b in r.graphs if b >= len(seqs))].replay()
            t0 = mark("forward", t0)
            tokens = r.sample(r.gv["logits"][:len(seqs)], seqs, engine.eos_token_ids, r.gv["greedy"][:len(seqs)])
        else:
            input_ids, positions, ctx, logit_rows, seqs = r.prepare(batch)
            t0 = mark("prepare", t0)
            hidden = r.model(input_ids, positions, ctx)
            t0 = mark("forward", t0)
            tokens = r.sample(r.model.compute_logits(hidden[logit_rows]), seqs, engine.eos_token_ids)
        sampled = {seq.seq_id: tok for seq, tok in zip(seqs, tokens)}
        t0 = mark("logits+sample", t0)
    s.postprocess(batch, sampled, engine.eos_token_ids)
    mark("postprocess", t0)
    return t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--batches", default="1,64,256")
    ap.add_argument("--context", type=int, default=192, help="tokens per sequence when measured")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    dev = "cpu" if args.tiny else args.device
    shape = TINY if args.tiny else LLAMA_1B
    dtype = "float32" if dev == "cpu" else "bfloat16"
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    batches = [int(b) for b in args.batches.split(",")]
    max_len = args.context + args.steps + 64
    gen = torch.Generator().manual_seed(0)
    rows = []
    for eager in (False, True):
        engine = LLMEngine(EngineConfig(model="", model_config=ModelConfig(**shape), device=dev, dtype=dtype,
                                        max_model_len=max_len, max_num_seqs=max(batches),
                                        max_num_batched_tokens=max(8192, max(batches)),
                                        enforce_eager=eager), load_tokenizer=False)
        for bs in batches if not eager else batches[-1:]:
            prompts = [torch.randint(0, shape["vocab_size"], (args.context - 8,), generator=gen).tolist()
                       for _ in range(bs)]
            for p in prompts:
                engine.add_request(p, SamplingParams(max_tokens=args.steps + 40, ignore_eos=True))
            while any(seq.num_completion_tokens < 8 for seq in engine.scheduler.running) or \
                    engine.scheduler.waiting:  # prefill, then a few decode steps to warm up
                engine.step()
            if eager:
                profile(engine, sync)
            else:
                times = [timed_step(engine, sync) for _ in range(args.steps)]
                med = {p: statistics.median(t[p] for t in times) for p in PARTS}
                rows.append((bs, med))
            for seq in list(engine.scheduler.running) + list(engine.scheduler.waiting):
                engine.abort(seq)
        del engine
    print(f"\nsteady decode, {args.context} tokens of context, median of {args.steps} steps (ms):")
    print("| batch | " + " | ".join(PARTS) + " | sum | tok/s at that step time |")
    print("|---" * (len(PARTS) + 3) + "|")
    for bs, med in rows:
        total = sum(med.values())
        print(f"| {bs} | " + " | ".join(f"{med[p]:.2f}" for p in PARTS) + f" | {total:.2f} | {bs / total * 1e3:,.0f} |")


def profile(engine: LLMEngine, sync) -> None:
    """The eager forward pass of one decode step, by kernel (CUDA time), top 12."""
    if not torch.cuda.is_available():
        return
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            timed_step(engine, sync)
    print("\neager decode step by kernel (3 steps):")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=60))


if __name__ == "__main__":
    main()
