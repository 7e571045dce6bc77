"""The serving benchmark: an asyncio load generator with `vllm bench serve`'s definitions.

Definitions (the same as vLLM's benchmarks/serve.py and endpoint_request_func.py, so numbers
from `z2v bench` and `vllm bench serve` can sit side by side):

  TTFT   request sent -> first streamed chunk that carries a choice (its text may be empty)
  ITL    every gap between consecutive such chunks, pooled over all requests
  E2EL   request sent -> last such chunk (streaming); -> full response (non-streaming)
  TPOT   per request, (E2EL - TTFT) / (output tokens - 1), only when output tokens > 1
  request throughput      completed requests / benchmark duration
  output token throughput output tokens / duration
  total token throughput  (input + output tokens) / duration
  duration                first request dispatched -> last request finished
  statistics              mean, median, p99 (linear interpolation, numpy's default), std
  arrivals                all at once (rate inf) or gamma-distributed gaps with shape
                          `burstiness` and mean 1/rate (burstiness 1: a Poisson process)
  concurrency             an asyncio.Semaphore around each request; the clock of a request
                          starts after it gets through (client queueing is not latency)
  token counts            the server's: usage.completion_tokens / prompt_tokens (openai),
                          completion_tokens / prompt_tokens (generate)

`--api generate` speaks the naive API (POST /generate, JSON in, JSON out, no streaming): only
E2EL is observable, and the result says so instead of inventing a TTFT.
`--api openai` speaks /v1/completions with stream=true and stream_options.include_usage, so
the same command measures real vLLM. HTTP goes through zero2vllm.instruments.httpclient (asyncio streams,
keep-alive), which costs far less per request than httpx, so the client is never the bottleneck.

The core is `run_benchmark(...) -> dict` (JSON-able); `z2v bench`, `z2v compare` and the engine's
benchmarks all call it.

The work is split by job: `requests` (building prompts and speaking each API), `stats`
(the metric definitions), `run` (arrivals, concurrency, the load loop) and `report` (tables,
plots, JSON). This package re-exports their public names.
"""

from .requests import (
    APIS, BenchError, BenchRequest, RequestResult, WORDS, endpoint_url, load_prompts,
    make_requests, request_generate, request_openai,
)
from .stats import compute_metrics, flat_trend, percentile, summarize
from .run import MEMORY_KEYS, MemorySampler, run_benchmark, run_benchmark_async
from .report import format_run, format_summary, to_json, write_plots

__all__ = [
    "APIS",
    "BenchError",
    "BenchRequest",
    "RequestResult",
    "WORDS",
    "endpoint_url",
    "load_prompts",
    "make_requests",
    "request_generate",
    "request_openai",
    "compute_metrics",
    "flat_trend",
    "percentile",
    "summarize",
    "MEMORY_KEYS",
    "MemorySampler",
    "run_benchmark",
    "run_benchmark_async",
    "format_run",
    "format_summary",
    "to_json",
    "write_plots",
]
