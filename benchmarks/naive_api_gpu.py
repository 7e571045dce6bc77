"""The naive serving API on a GPU, measured with `z2v bench`, beside the plain HF baseline.

    PYTHONPATH=src python benchmarks/naive_api_gpu.py --device cuda            # on the H100/H200
    PYTHONPATH=src python benchmarks/naive_api_gpu.py --device cpu --shape tiny --concurrency 1,2 \
        --input-len 8 --output-len 4 --requests 4                              # a CPU smoke test

Model: Llama 3.2 1B's shape (1.24B parameters, bf16) with random weights, built in memory as
../shared/bench/hf_naive_baseline.py builds it (the real weights cannot be downloaded here;
speed and memory do not depend on the values). There is no tokenizer for a random model, so
prompts are token ids: the naive API takes `prompt_token_ids` and returns `token_ids`, and
`z2v bench --prompt-format ids` sends exactly --input-len ids. Output lengths are fixed
(ignore_eos -> min_new_tokens = max_new_tokens), 128 in / 128 out by default.

Two parts, each in its own process so neither shares the GPU or the GIL with the other:
  1. baseline: `model.generate` called directly, as hf_naive_baseline.py does: one request of
     128+128 after a warm-up, 8 sequential requests, static batches of 8, 32 and 64.
  2. the naive API (zero2vllm.instruments.naive: Flask, one request at a time) in a server process,
     driven by zero2vllm.instruments.bench.run_benchmark at each --concurrency level over loopback, with the
     server's RSS and CUDA memory sampled from its /metrics.
Expect the API's output throughput to stay near the sequential baseline at every concurrency
(one request at a time), far below the static batches: that gap is what batching buys.
Needs torch, transformers, flask and psutil; nothing else (the benchmark client is stdlib).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

SHAPES = {
    # ../shared/bench/hf_naive_baseline.py: Llama 3.2 1B
    "llama-1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                     max_position_embeddings=131072, rope_theta=500000.0, tie_word_embeddings=True,
                     rms_norm_eps=1e-5),
    # a few MB, for testing this script on a CPU
    "tiny": dict(vocab_size=10240, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
                 tie_word_embeddings=True),
}


def build_model(shape: str, device: str, dtype: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**SHAPES[shape])
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(getattr(torch, dtype)).eval()
    return model, cfg


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


# -- part 1: hf_naive_baseline, in this process -----------------------------------------------------
def baseline(args) -> dict:
    import torch

    model, cfg = build_model(args.shape, args.device, args.dtype)
    params = sum(p.numel() for p in model.parameters())
    out_len, in_len = args.output_len, args.input_len

    def gen(bs: int, plen: int, new: int) -> float:
        ids = torch.randint(0, cfg.vocab_size, (bs, plen), device=args.device)
        sync(args.device)
        t = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                             do_sample=False, pad_token_id=0, eos_token_id=None)
        sync(args.device)
        assert out.shape[1] == plen + new
        return time.perf_counter() - t

    res: dict = {"params_M": params / 1e6}
    gen(1, 16, 8)  # warm-up
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    dt = gen(1, in_len, out_len)
    res.update(bs1_latency_s=dt, bs1_tok_s=out_len / dt)
    t = time.perf_counter()
    for _ in range(args.seq_requests):
        gen(1, in_len, out_len)
    res["seq_tok_s"] = args.seq_requests * out_len / (time.perf_counter() - t)
    for bs in args.static_batches:
        res[f"static_bs{bs}_tok_s"] = bs * out_len / gen(bs, in_len, out_len)
    if args.device.startswith("cuda"):
        res["peak_mem_GiB"] = torch.cuda.max_memory_allocated() / 2**30
    return res


# -- part 2: the naive API in a server process --------------------------------------------------------
def serve(args) -> None:
    """Child process: build the model, serve it with the naive API, print the URL."""
    import torch

    from zero2vllm.instruments.naive import NaiveServer, create_app, make_http_server

    if args.threads:
        torch.set_num_threads(args.threads)
    model, cfg = build_model(args.shape, args.device, args.dtype)
    server = NaiveServer(model, None, name=f"{args.shape}-random-{args.dtype}",
                         max_model_len=args.input_len + args.output_len + 64,
                         max_new_tokens_limit=args.output_len)
    httpd = make_http_server(create_app(server), "127.0.0.1", 0)
    print(f"listening on http://127.0.0.1:{httpd.server_port}", flush=True)
    httpd.serve_forever()


def run_api(args) -> dict:
    from zero2vllm.instruments.bench import format_run, format_summary, run_benchmark

    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, "--serve", "--device", args.device, "--shape", args.shape,
           "--dtype", args.dtype, "--input-len", str(args.input_len), "--output-len", str(args.output_len)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            raise SystemExit(f"the server did not start (exit code {proc.poll()})")
        url = line.split()[2]
        levels = [int(c) for c in args.concurrency.split(",")]
        results = []
        for level in levels:
            n = args.requests or max(8, 2 * level)
            r = run_benchmark(url, api="generate", concurrency=[level], num_requests=n,
                              input_len=args.input_len, output_len=args.output_len, prompt_format="ids",
                              progress=lambda m: print("  " + m, flush=True))
            results.append(r["runs"][0])
        result = {**r, "runs": results}
        for run in results:
            print(format_run(run))
        print(format_summary(result))
        return result
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama-1b")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--requests", type=int, default=None, help="per level (default max(8, 2 x level))")
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--seq-requests", type=int, default=8, help="baseline: sequential requests")
    ap.add_argument("--static-batches", default="8,32,64", help="baseline: static batch sizes")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (CPU runs)")
    ap.add_argument("--out", type=Path, default=None, help="write all results as JSON here")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.static_batches = [int(b) for b in args.static_batches.split(",") if b]
    if args.serve:
        return serve(args)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU here; try --device cpu --shape tiny")
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    print(f"device {gpu}, torch {torch.__version__}, shape {args.shape} ({args.dtype}, random weights), "
          f"{args.input_len} in / {args.output_len} out", flush=True)
    report: dict = {"device": gpu, "torch": torch.__version__, "shape": args.shape, "dtype": args.dtype,
                    "input_len": args.input_len, "output_len": args.output_len}
    if not args.skip_baseline:
        print("\n== baseline: model.generate directly (hf_naive_baseline.py) ==", flush=True)
        report["baseline"] = baseline(args)
        print(json.dumps(report["baseline"]), flush=True)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    print("\n== the naive API (Flask, one request at a time) through z2v bench ==", flush=True)
    api = run_api(args)
    report["api"] = [{k: r[k] for k in ("concurrency", "completed", "failed", "request_throughput",
                                        "output_throughput", "e2el_ms", "memory")} for r in api["runs"]]

    print("\n== side by side (output tokens/s) ==")
    b = report.get("baseline", {})
    if b:
        print(f"  baseline, 1 request after warm-up:   {b['bs1_tok_s']:8.1f}")
        print(f"  baseline, {args.seq_requests} sequential requests:     {b['seq_tok_s']:8.1f}")
        for bs in args.static_batches:
            print(f"  baseline, static batch of {bs:<3}:       {b[f'static_bs{bs}_tok_s']:8.1f}")
    for r in report["api"]:
        mem = (r.get("memory") or {}).get("cuda_peak_bytes") or {}
        peak = f", peak CUDA {mem['max'] / 2**30:.2f} GiB" if mem else ""
        print(f"  naive API, concurrency {r['concurrency']:<3}:         {r['output_throughput']:8.1f}"
              f"   (E2EL median {r['e2el_ms']['median'] / 1e3:.2f} s{peak})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
