"""A mixed workload arriving over time: our engine and Hugging Face's static-cache generate, one process.

    PYTHONPATH=src python benchmarks/engine_mixed.py --device cuda             # both, Llama-3.2-1B shape
    PYTHONPATH=src python benchmarks/engine_mixed.py --tiny --requests 24     # CPU smoke test, seconds

The workload (seeded): `--requests` requests with prompt lengths uniform in 32-1,024 tokens and
output lengths uniform in 32-512 (`ignore_eos`, so every request produces exactly its length),
arriving as a Poisson process at `--rate` requests/s.

- The engine gets each request when it arrives (`add_request` at its arrival time, steps between).
- Hugging Face, as a user who knows it would batch: fixed batches of `--hf-batch` in arrival
  order, left-padded to the batch's longest prompt, each generating the batch's longest output
  (`min_new_tokens` = `max_new_tokens`: no early stop); a batch starts when its last request has
  arrived and the previous batch is done. The static KV cache is sized once for the longest
  prompt + output (transformers keeps the largest size it has seen, so the compiled decode step
  is compiled once, in a warm-up), and the short last batch is padded with copies to the same
  batch size (also to avoid a recompile); only real requests' tokens count.

Per request: TTFT (arrival to first token), TPOT ((last token - first token) / (tokens - 1)).
Throughput: all requests' output tokens / (last token's time - first arrival).
KV utilisation: tokens of live requests / KV slots allocated, mean over steps (the engine's
paged pool; HF's static cache).
The floor: each engine step needs at least max(bytes / bandwidth, FLOPs / matmul rate), where
bytes are the weights plus the K/V it reads, and FLOPs the matmuls plus attention; the sum over
the steps the engine took, against the measured time, is the fraction of the card's floor.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from engine_gpu import LLAMA_1B, TINY  # noqa: E402

from zero2vllm.engine import EngineConfig, LLMEngine, ModelConfig, SamplingParams  # noqa: E402

import torch  # noqa: E402

BANDWIDTH = 4.3e12   # bytes/s: a device-to-device copy on this workplace's H200s (KINDS.md)
MATMUL = 790e12      # bf16 FLOP/s: an 8192^3 matmul there


def workload(args, vocab: int) -> list[dict]:
    gen = torch.Generator().manual_seed(args.seed)
    n = args.requests
    ins = torch.randint(args.min_input, args.max_input + 1, (n,), generator=gen).tolist()
    outs = torch.randint(args.min_output, args.max_output + 1, (n,), generator=gen).tolist()
    gaps = torch.empty(n).exponential_(args.rate, generator=gen)  # Poisson arrivals: exponential gaps
    arrivals = torch.cumsum(gaps, 0).tolist()
    return [{"prompt": torch.randint(1, vocab, (i,), generator=gen).tolist(), "out": o, "arrival": a}
            for i, o, a in zip(ins, outs, arrivals)]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def summary(name, reqs, wall, kv_util, extra=None) -> dict:
    ttft = [r["first"] - r["arrival"] for r in reqs]
    tpot = [(r["last"] - r["first"]) / (r["out"] - 1) for r in reqs if r["out"] > 1]
    tokens = sum(r["out"] for r in reqs)
    return {"system": name, "requests": len(reqs), "output_tokens": tokens, "wall_s": wall,
            "output_tok_s": tokens / wall, "ttft_mean_ms": 1e3 * statistics.mean(ttft),
            "ttft_p99_ms": 1e3 * pct(ttft, 0.99), "tpot_mean_ms": 1e3 * statistics.mean(tpot),
            "tpot_p99_ms": 1e3 * pct(tpot, 0.99), "kv_util": kv_util, **(extra or {})}


def run_engine(args, shape, reqs, dev, dtype) -> dict:
    mc = ModelConfig(**shape)
    engine = LLMEngine(EngineConfig(model="", model_config=mc, device=dev, dtype=dtype,
                                    max_model_len=args.max_input + args.max_output + 16,
                                    max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
                                    kv_cache_gb=args.kv_cache_gb, enforce_eager=args.enforce_eager),
                       load_tokenizer=False)
    warm = [r["prompt"] for r in reqs[:8]]
    engine.generate(warm, SamplingParams(max_tokens=16, ignore_eos=True))  # kernels, allocator
    engine.stats = type(engine.stats)()
    # the floor's counts: weights read once per step; K/V bytes and attention FLOPs per token of context
    h, layers = mc.hidden_size, mc.num_layers
    params = layers * (h * (mc.num_heads + 2 * mc.num_kv_heads) * mc.head_dim + mc.num_heads * mc.head_dim * h
                       + 3 * h * mc.intermediate_size)
    weight_bytes = (params + mc.vocab_size * h) * torch.tensor([], dtype=getattr(torch, dtype)).element_size()
    kv_per_token = 2 * layers * mc.num_kv_heads * mc.head_dim * (2 if dtype == "bfloat16" else 4)
    floor = 0.0
    split = {"with prompt tokens": [0, 0.0], "decode only": [0, 0.0]}  # steps, seconds in step()
    pending, by_id, done = deque(reqs), {}, []
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    while pending or engine.has_work():
        now = time.perf_counter() - start
        while pending and pending[0]["arrival"] <= now:
            r = pending.popleft()
            seq = engine.add_request(r["prompt"], SamplingParams(max_tokens=r["out"], ignore_eos=True))
            by_id[seq.seq_id] = r
        if not engine.has_work():
            time.sleep(max(0.0, pending[0]["arrival"] - now))
            continue
        t0 = time.perf_counter()
        got = engine.step()
        t = time.perf_counter() - start
        kind = split["decode only" if all(n == 1 for _, n in engine.last_batch.items) else "with prompt tokens"]
        kind[0], kind[1] = kind[0] + 1, kind[1] + time.perf_counter() - t0
        for seq in got:
            r = by_id[seq.seq_id]
            r.setdefault("first", t)
            r["last"] = t
            if seq.is_finished:
                done.append(r)
        items = engine.last_batch.items
        tokens = sum(n for _, n in items)
        context = sum(n * (s.num_computed_tokens - (n - 1) / 2) for s, n in items)  # keys each query attends
        flops = 2 * params * tokens + 2 * mc.vocab_size * h * len(got) + 4 * layers * mc.num_heads * mc.head_dim * context
        read = weight_bytes + kv_per_token * sum(s.num_computed_tokens for s, _ in items)
        floor += max(read / BANDWIDTH, flops / MATMUL)
    wall = max(r["last"] for r in done)
    kv = engine.stats.kv_summary()
    steps = engine.stats.steps
    engine.shutdown()
    return summary("engine", done, wall, kv["paged"],
                   {"steps": steps, "step_split": split, "floor_s": floor, "floor_fraction": floor / wall,
                    "kv_util_contiguous_prompt_plus_max_tokens": kv["contiguous_prompt_plus_max_tokens"],
                    "preemptions": engine.scheduler.num_preemptions})


def run_hf(args, shape, reqs, dev, dtype) -> dict:
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.generation.streamers import BaseStreamer

    cfg = LlamaConfig(vocab_size=shape["vocab_size"], hidden_size=shape["hidden_size"],
                      intermediate_size=shape["intermediate_size"], num_hidden_layers=shape["num_layers"],
                      num_attention_heads=shape["num_heads"], num_key_value_heads=shape["num_kv_heads"],
                      head_dim=shape["head_dim"], rope_theta=shape["rope_theta"], rms_norm_eps=1e-5,
                      tie_word_embeddings=shape["tie_word_embeddings"],
                      max_position_embeddings=shape["max_position_embeddings"])
    torch.manual_seed(0)
    with torch.device(dev):
        model = LlamaForCausalLM(cfg).to(getattr(torch, dtype)).eval()
    model.generation_config.cache_implementation = "static"
    if not dev.startswith("cuda"):
        model.generation_config.disable_compile = True  # the CPU smoke test: no compile
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)

    class Clock(BaseStreamer):  # generate calls put() with the prompt, then once per new token
        def __init__(self):
            self.times = []

        def put(self, value):
            self.times.append(time.perf_counter())

        def end(self):
            pass

    B = args.hf_batch

    def generate(prompts, new_tokens, streamer=None):
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts], device=dev)  # left padding
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=dev)
        with torch.inference_mode():
            return model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                  do_sample=False, pad_token_id=0, streamer=streamer)

    # warm-up: the cache at its largest size (prompt max + output max), then two normal shapes
    longest = [reqs[0]["prompt"][:1] * (args.max_input + args.max_output - 4)] * B
    generate(longest, 4)
    generate([r["prompt"] for r in reqs[:B]], 8)
    generate([r["prompt"] for r in reqs[:B]], 8)
    sync()
    start = time.perf_counter()
    util_sum = util_steps = 0.0
    for b in range(0, len(reqs), B):
        batch = reqs[b:b + B]
        wait = batch[-1]["arrival"] - (time.perf_counter() - start)
        if wait > 0:
            time.sleep(wait)
        clock = Clock()
        new = max(r["out"] for r in batch)
        prompts = [r["prompt"] for r in batch]
        generate(prompts + prompts[:1] * (B - len(batch)), new, clock)
        sync()
        ticks = [t - start for t in clock.times[1:]]  # ticks[k]: token k + 1 is out
        for r in batch:
            r["first"], r["last"] = ticks[0], ticks[r["out"] - 1]
        slots = B * (args.max_input + args.max_output)  # the static cache, allocated for every row
        for s in range(new):
            util_sum += sum(len(r["prompt"]) + s + 1 for r in batch if s < r["out"]) / slots
            util_steps += 1
    wall = max(r["last"] for r in reqs)
    return summary(f"HF static cache, batch {B}", reqs, wall, util_sum / max(util_steps, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=150.0, help="mean arrivals per second (Poisson)")
    ap.add_argument("--min-input", type=int, default=32)
    ap.add_argument("--max-input", type=int, default=1024)
    ap.add_argument("--min-output", type=int, default=32)
    ap.add_argument("--max-output", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--max-num-batched-tokens", type=int, default=8192)
    ap.add_argument("--kv-cache-gb", type=float, default=16.0)
    ap.add_argument("--enforce-eager", action="store_true")
    ap.add_argument("--hf-batch", type=int, default=64)
    ap.add_argument("--no-hf", action="store_true", help="the engine only")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    dev = args.device
    shape = TINY if args.tiny else LLAMA_1B
    if args.tiny:
        args.max_input, args.max_output, args.kv_cache_gb = min(args.max_input, 64), min(args.max_output, 24), 0.05
        args.min_input, args.min_output = min(args.min_input, 8), min(args.min_output, 4)
    dtype = "bfloat16" if dev.startswith("cuda") else "float32"
    card = torch.cuda.get_device_name() if dev.startswith("cuda") else "CPU"
    print(f"device: {card}; torch {torch.__version__}; {args.requests} requests, prompts "
          f"{args.min_input}-{args.max_input}, outputs {args.min_output}-{args.max_output}, Poisson {args.rate}/s",
          flush=True)
    results = [run_engine(args, shape, workload(args, shape["vocab_size"]), dev, dtype)]
    print(json.dumps(results[-1]), flush=True)
    if not args.no_hf:
        results.append(run_hf(args, shape, workload(args, shape["vocab_size"]), dev, dtype))
        print(json.dumps(results[-1]), flush=True)
    print("\n| system | output tok/s | TTFT mean / p99 (ms) | TPOT mean / p99 (ms) | KV util | wall (s) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['system']} | {r['output_tok_s']:,.0f} | {r['ttft_mean_ms']:,.0f} / {r['ttft_p99_ms']:,.0f} | "
              f"{r['tpot_mean_ms']:.2f} / {r['tpot_p99_ms']:.2f} | {r['kv_util']:.1%} | {r['wall_s']:.2f} |")
    eng = results[0]
    print("engine steps: " + ", ".join(f"{k} {n} in {sec:.2f} s" for k, (n, sec) in eng["step_split"].items()))
    print(f"engine: {eng['steps']} steps, floor {eng['floor_s']:.2f} s = {eng['floor_fraction']:.1%} of the measured "
          f"time (bandwidth {BANDWIDTH / 1e12:.1f} TB/s, matmul {MATMUL / 1e12:.0f} TFLOP/s)")
    if len(results) > 1:
        print(f"engine / HF: {eng['output_tok_s'] / results[1]['output_tok_s']:.2f}x output tok/s; p99 TTFT "
              f"{eng['ttft_p99_ms']:,.0f} vs {results[1]['ttft_p99_ms']:,.0f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
