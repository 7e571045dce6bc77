"""`z2v serve engine`: the flags of the engine's OpenAI server (engine/api_server.py), the engine
they build, and the server's start. Flags mirror `vllm serve` where both have one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="z2v serve engine", description="Serve a Llama-architecture model with "
                                 "zero2vllm's engine behind an OpenAI-compatible API.")
    ap.add_argument("--model", default="smollm2", help="smollm2 | a Hugging Face model folder | a cached HF id")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--api-key", default=None, help="require Authorization: Bearer KEY on /v1/ (as vLLM)")
    ap.add_argument("--served-model-name", default=None, help="the name /v1/models reports (default: folder name)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (CUDA default)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--kv-cache-gb", type=float, default=1.0)
    ap.add_argument("--num-kv-blocks", type=int, default=None, help="overrides --kv-cache-gb")
    ap.add_argument("--max-num-seqs", type=int, default=64)
    ap.add_argument("--max-num-batched-tokens", type=int, default=2048,
                    help="token budget per step (default 2048, vLLM's for its CPU server)")
    ap.add_argument("--max-model-len", type=int, default=None)
    ap.add_argument("--no-prefix-caching", action="store_true")
    ap.add_argument("--no-cpu-kernel", action="store_true",
                    help="CPU: PyTorch's decode attention (gather + SDPA), elementwise ops and oneDNN "
                         "matmuls instead of the C++ kernels (to compare)")
    ap.add_argument("--no-huge-pages", action="store_true",
                    help="CPU: keep 4 KB pages for the weights and KV cache (starts ~3 s sooner, decodes slower)")
    ap.add_argument("--enforce-eager", action="store_true", help="CUDA: no CUDA graphs")
    ap.add_argument("--no-async-scheduling", action="store_true",
                    help="CUDA: read each step's tokens before planning the next (to compare)")
    ap.add_argument("--tensor-parallel-size", "-tp", type=int, default=1,
                    help="split the model across N processes: N GPUs on CUDA (NCCL), N CPU ranks (gloo)")
    return ap


def engine_from_args(args) -> tuple[LLMEngine, str]:
    from zero2vllm.engine import EngineConfig, LLMEngine, SamplingParams
    from zero2vllm.models import ensure_model_dir

    folder = ensure_model_dir(args.model)
    dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    config = EngineConfig(model=str(folder), device=args.device, dtype=dtype, block_size=args.block_size,
                          kv_cache_gb=args.kv_cache_gb, num_kv_blocks=args.num_kv_blocks,
                          max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
                          max_model_len=args.max_model_len, enable_prefix_caching=not args.no_prefix_caching,
                          enforce_eager=args.enforce_eager, async_scheduling=not args.no_async_scheduling,
                          num_threads=args.threads, huge_pages=not args.no_huge_pages,
                          cpu_decode_kernel=not args.no_cpu_kernel, tensor_parallel_size=args.tensor_parallel_size)
    engine = LLMEngine(config)
    engine.generate([[1, 2, 3, 4]], SamplingParams(max_tokens=2))  # warm-up: first-call costs before serving
    engine.stats = type(engine.stats)()
    return engine, args.served_model_name or folder.name


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        engine, name = engine_from_args(args)
    except Exception as exc:  # a bad --model (ModelError), config.json, or flag value: one line, no trace
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    try:
        from zero2vllm.engine.api_server import Server

        asyncio.run(Server(engine, name, api_key=args.api_key).serve(args.host, args.port))
    except OSError as exc:
        print(f"Error: cannot listen on {args.host}:{args.port}: {exc.strerror}; pick another --port", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        engine.shutdown()
    return 0

