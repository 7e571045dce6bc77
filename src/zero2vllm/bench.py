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
the same command measures real vLLM. HTTP goes through zero2vllm.httpclient (asyncio streams,
keep-alive), which costs far less per request than httpx, so the client is never the bottleneck.

The core is `run_benchmark(...) -> dict` (JSON-able); `z2v bench`, `z2v compare` and the engine's
benchmarks all call it.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

APIS = ("generate", "openai")

# Common English words that are one token each in GPT-2/Llama/SmolLM2-style BPE vocabularies,
# so a text prompt of N words is about N tokens (the server's own count is what we report).
WORDS = (
    "the of and to in is was for that with as on by at from his her they this which be had not "
    "are but were have one all an their there been has when who will more no if out so said what "
    "up its about into than them can only other new some could time these two may then do first "
    "any my now such like our over man me even most made after also did many before must through "
    "back years where much your way well down should because each just those people how too little "
    "state good very make world still own see men work long get here between both life being under "
    "never day same another know while last might us great old year off come since against go came "
    "right used take three"
).split()


class BenchError(Exception):
    """Cannot run the benchmark (server not reachable, bad arguments); one line says why."""


@dataclass
class RequestResult:
    success: bool = False
    error: str = ""
    start_time: float = 0.0  # perf_counter when the request was sent
    latency: float = 0.0  # E2EL, seconds
    ttft: float | None = None  # None: not observable (non-streaming API)
    itl: list[float] = field(default_factory=list)
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    text: str = ""


@dataclass
class BenchRequest:
    prompt: str | list[int]
    prompt_len: int  # the client's estimate; the server's count replaces it when given
    output_len: int


# -- building the requests ------------------------------------------------------------------------
def make_requests(
    n: int,
    *,
    input_len: int = 128,
    output_len: int = 128,
    prompts: list[str] | None = None,
    prompt_format: str = "text",
    seed: int = 0,
) -> list[BenchRequest]:
    """N requests: the given prompts cycled, or random prompts of `input_len` words / token ids."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if prompts:
            p = prompts[i % len(prompts)]
            out.append(BenchRequest(p, max(1, len(p.split())), output_len))
        elif prompt_format == "ids":
            ids = [rng.randrange(100, 10_000) for _ in range(input_len)]
            out.append(BenchRequest(ids, input_len, output_len))
        else:
            words = [rng.choice(WORDS) for _ in range(input_len)]
            out.append(BenchRequest(" ".join(words), input_len, output_len))
    return out


def load_prompts(path: Path) -> list[str]:
    """One prompt per line (.txt), or JSON lines with a "prompt" field (.jsonl)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BenchError(f"--prompts {path}: {exc.strerror or exc}") from None
    prompts = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                prompt = json.loads(line).get("prompt")
            except (ValueError, AttributeError):
                raise BenchError(f"--prompts {path}:{n}: not a JSON object with a \"prompt\"") from None
            if not isinstance(prompt, str) or not prompt:
                raise BenchError(f"--prompts {path}:{n}: \"prompt\" must be a non-empty string")
            prompts.append(prompt)
        else:
            prompts.append(line)
    if not prompts:
        raise BenchError(f"--prompts {path}: no prompts in the file")
    return prompts


# -- the request functions --------------------------------------------------------------------------
def _first_int(*values: Any) -> int | None:
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


async def request_generate(client, url: str, req: BenchRequest, extra: dict) -> RequestResult:
    """POST /generate, non-streaming: E2EL is the only latency a client can see."""
    if isinstance(req.prompt, list):
        payload: dict[str, Any] = {"prompt_token_ids": req.prompt}
    else:
        payload = {"prompt": req.prompt}
    payload.update(max_new_tokens=req.output_len, temperature=0.0, ignore_eos=True, **extra)
    out = RequestResult(prompt_tokens=req.prompt_len)
    st = time.perf_counter()
    out.start_time = st
    try:
        resp = await client.post(url, json=payload)
        body = resp.content
        out.latency = time.perf_counter() - st
        if resp.status_code != 200:
            out.error = f"HTTP {resp.status_code}: {body[:200].decode('utf-8', 'replace')}"
            return out
        data = json.loads(body)
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        out.output_tokens = _first_int(data.get("completion_tokens"), usage.get("completion_tokens"),
                                       data.get("generated_tokens"), data.get("tokens_generated"))
        if out.output_tokens is None and isinstance(data.get("token_ids"), list):
            out.output_tokens = len(data["token_ids"])
        pt = _first_int(data.get("prompt_tokens"), usage.get("prompt_tokens"))
        if pt is not None:
            out.prompt_tokens = pt
        out.text = str(data.get("text", ""))[:200]
        out.success = True
    except Exception as exc:  # connection refused, reset, timeout, bad JSON: a failed request
        out.latency = time.perf_counter() - st
        out.error = f"{type(exc).__name__}: {exc}"
    return out


async def request_openai(client, url: str, req: BenchRequest, extra: dict) -> RequestResult:
    """POST /v1/completions with stream=true: vLLM's async_request_openai_completions, on our asyncio client."""
    payload = {
        "prompt": req.prompt,
        "max_tokens": req.output_len,
        "temperature": 0.0,
        "repetition_penalty": 1.0,
        "ignore_eos": True,  # fixed output lengths, as vllm bench serve --ignore-eos
        "stream": True,
        "stream_options": {"include_usage": True},
        **extra,
    }
    out = RequestResult(prompt_tokens=req.prompt_len)
    st = time.perf_counter()
    out.start_time = st
    most_recent = st
    first = False
    text_parts: list[str] = []
    try:
        async with client.stream("POST", url, json=payload) as resp:
            if resp.status_code != 200:
                body = await resp.aread()
                out.latency = time.perf_counter() - st
                out.error = f"HTTP {resp.status_code}: {body[:200].decode('utf-8', 'replace')}"
                return out
            async for line in resp.aiter_lines():
                line = line.strip()
                if not line or line.startswith(":"):  # SSE keep-alive comments
                    continue
                chunk = line.removeprefix("data:").strip()
                if chunk == "[DONE]":
                    continue
                data = json.loads(chunk)
                if choices := data.get("choices"):
                    ts = time.perf_counter()
                    if not first:
                        first = True
                        out.ttft = ts - st
                    else:
                        out.itl.append(ts - most_recent)
                    most_recent = ts
                    text_parts.append(choices[0].get("text") or "")
                elif usage := data.get("usage"):
                    out.output_tokens = usage.get("completion_tokens")
                    if usage.get("prompt_tokens") is not None:
                        out.prompt_tokens = usage["prompt_tokens"]
        out.latency = most_recent - st
        out.text = "".join(text_parts)[:200]
        if first:
            out.success = True
        else:
            out.error = "the stream carried no token chunk (no TTFT)"
    except Exception as exc:
        out.latency = time.perf_counter() - st
        out.error = f"{type(exc).__name__}: {exc}"
    return out


# -- statistics -------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """numpy.percentile's default (linear interpolation between closest ranks)."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(values_s: list[float]) -> dict | None:
    """mean / median / p99 / std / min / max in milliseconds; None when nothing was observed."""
    if not values_s:
        return None
    ms = [v * 1e3 for v in values_s]
    return {
        "mean": statistics.fmean(ms),
        "median": percentile(ms, 50),
        "p99": percentile(ms, 99),
        "std": statistics.pstdev(ms) if len(ms) > 1 else 0.0,
        "min": min(ms),
        "max": max(ms),
        "n": len(ms),
    }


def compute_metrics(results: list[RequestResult], duration: float, requested_output_len: int) -> dict:
    """Aggregate per-request results exactly as vllm bench serve's calculate_metrics does."""
    ok = [r for r in results if r.success]
    notes = []
    out_lens = []
    assumed = 0
    for r in ok:
        if r.output_tokens is None:  # server gave no count: assume what we asked for, and say so
            assumed += 1
            out_lens.append(requested_output_len)
        else:
            out_lens.append(int(r.output_tokens))
    if assumed:
        notes.append(f"{assumed} responses carried no token count; assumed {requested_output_len} output tokens each")
    in_lens = [int(r.prompt_tokens or 0) for r in ok]
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    tpots = []
    for r, n_out in zip(ok, out_lens):
        if r.ttft is not None and n_out > 1:
            tpots.append((r.latency - r.ttft) / (n_out - 1))
    itls = [gap for r in ok for gap in r.itl]
    e2els = [r.latency for r in ok]
    failed = [r for r in results if not r.success]
    total_in, total_out = sum(in_lens), sum(out_lens)
    return {
        "completed": len(ok),
        "failed": len(failed),
        "errors": sorted({r.error.splitlines()[0][:200] for r in failed if r.error})[:5],
        "duration_s": duration,
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": len(ok) / duration if duration > 0 else 0.0,
        "output_throughput": total_out / duration if duration > 0 else 0.0,
        "total_token_throughput": (total_in + total_out) / duration if duration > 0 else 0.0,
        "ttft_ms": summarize(ttfts),
        "tpot_ms": summarize(tpots),
        "itl_ms": summarize(itls),
        "e2el_ms": summarize(e2els),
        "ttft_observable": bool(ttfts),
        "notes": notes,
        "samples": {  # per-request values (ms) for plots and later comparison
            "e2el_ms": [round(v * 1e3, 3) for v in e2els],
            "ttft_ms": [round(v * 1e3, 3) for v in ttfts],
            "output_tokens": out_lens,
        },
    }


# -- memory sampling --------------------------------------------------------------------------------
MEMORY_KEYS = {
    "process_resident_memory_bytes": "rss_bytes",
    "z2v_cuda_memory_allocated_bytes": "cuda_allocated_bytes",
    "z2v_cuda_max_memory_allocated_bytes": "cuda_peak_bytes",
}


class MemorySampler:
    """Samples the server's memory during a run: from its /metrics text, or from a process id."""

    def __init__(self, *, metrics_url: str | None = None, pid: int | None = None, interval: float = 0.5):
        self.metrics_url, self.pid, self.interval = metrics_url, pid, interval
        self.samples: list[dict] = []
        self.error: str | None = None
        self._task: asyncio.Task | None = None
        self._proc = None

    @property
    def enabled(self) -> bool:
        return bool(self.metrics_url or self.pid)

    async def sample_once(self, client) -> dict | None:
        if self.pid:
            import psutil

            if self._proc is None:
                self._proc = psutil.Process(self.pid)
            procs = [self._proc] + self._proc.children(recursive=True)
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                except psutil.Error:
                    pass
            return {"t": time.perf_counter(), "rss_bytes": rss}
        from zero2vllm.serving.metrics import parse_prometheus

        resp = await client.get(self.metrics_url)
        if resp.status_code != 200:
            raise BenchError(f"{self.metrics_url} answered HTTP {resp.status_code}")
        values = parse_prometheus(resp.text)
        sample = {"t": time.perf_counter()}
        for key, name in MEMORY_KEYS.items():
            if key in values:
                sample[name] = int(values[key])
        if len(sample) == 1:
            raise BenchError(f"{self.metrics_url} has no process_resident_memory_bytes")
        return sample

    async def _loop(self, client) -> None:
        while True:
            try:
                s = await self.sample_once(client)
                if s:
                    self.samples.append(s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # memory is a side measurement: note it, keep benchmarking
                self.error = f"{type(exc).__name__}: {exc}"
                return
            await asyncio.sleep(self.interval)

    def start(self, client) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._loop(client))

    async def stop(self) -> dict | None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if not self.samples:
            return {"error": self.error} if self.error else None
        out: dict[str, Any] = {"source": f"pid {self.pid}" if self.pid else self.metrics_url,
                               "n": len(self.samples)}
        for name in ("rss_bytes", "cuda_allocated_bytes", "cuda_peak_bytes"):
            vals = [s[name] for s in self.samples if name in s]
            if vals:
                out[name] = {"first": vals[0], "max": max(vals), "mean": statistics.fmean(vals)}
        if self.error:
            out["error"] = self.error
        return out


# -- one run ------------------------------------------------------------------------------------------
def endpoint_url(url: str, api: str) -> tuple[str, str]:
    """(base URL, endpoint URL) from what the user typed: a base or the endpoint itself."""
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise BenchError(f"URL {url!r}: give it with http://, e.g. http://127.0.0.1:8000")
    suffix = "/generate" if api == "generate" else "/v1/completions"
    for known in ("/generate", "/v1/completions"):
        if url.endswith(known):
            return url[: -len(known)], url
    return url, url + suffix


async def _arrivals(n: int, rate: float, burstiness: float, rng: random.Random):
    """vLLM's get_request: yield at once (rate inf), else after gamma(burstiness, 1/(rate*b)) gaps."""
    theta = 1.0 / (rate * burstiness) if math.isfinite(rate) else 0.0
    for i in range(n):
        yield i
        if not math.isfinite(rate):
            continue
        await asyncio.sleep(rng.gammavariate(burstiness, theta))


async def _run_level(client, endpoint: str, api: str, requests: list[BenchRequest], *,
                     concurrency: int | None, rate: float, burstiness: float, seed: int,
                     extra: dict, sampler: MemorySampler | None,
                     progress: Callable[[str], None] | None) -> dict:
    func = request_generate if api == "generate" else request_openai
    sem = asyncio.Semaphore(concurrency) if concurrency else None
    rng = random.Random(seed)
    results: list[RequestResult | None] = [None] * len(requests)

    async def one(i: int) -> None:
        if sem is None:
            results[i] = await func(client, endpoint, requests[i], extra)
        else:
            async with sem:
                results[i] = await func(client, endpoint, requests[i], extra)

    if sampler:
        sampler.start(client)
    started = time.perf_counter()
    tasks = []
    async for i in _arrivals(len(requests), rate, burstiness, rng):
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    duration = time.perf_counter() - started
    memory = await sampler.stop() if sampler else None
    metrics = compute_metrics([r for r in results if r is not None], duration, requests[0].output_len)
    metrics.update(concurrency=concurrency, request_rate=rate, burstiness=burstiness,
                   num_requests=len(requests), memory=memory)
    if not metrics["ttft_observable"] and metrics["completed"]:
        metrics["notes"].append(
            "TTFT, TPOT and ITL are not observable: the API answers in one piece (no streaming); "
            "only E2EL is measured"
        )
    if progress:
        progress(_one_line(metrics))
    return metrics


def _one_line(m: dict) -> str:
    c = m["concurrency"] or "inf"
    line = (f"concurrency {c}: {m['completed']}/{m['num_requests']} ok in {m['duration_s']:.2f} s, "
            f"{m['request_throughput']:.2f} req/s, {m['output_throughput']:.1f} output tok/s")
    if m["e2el_ms"]:
        line += f", E2EL median {m['e2el_ms']['median']:.1f} ms"
    if m["ttft_ms"]:
        line += f", TTFT median {m['ttft_ms']['median']:.1f} ms"
    return line


async def _discover_model(client, base: str) -> str | None:
    try:
        resp = await client.get(base + "/v1/models")
        data = resp.json().get("data") or []
        return data[0]["id"] if data else None
    except Exception:
        return None


async def run_benchmark_async(
    url: str,
    *,
    api: str = "generate",
    concurrency: list[int | None] | int | None = None,
    num_requests: int | None = None,
    request_rate: float = math.inf,
    burstiness: float = 1.0,
    input_len: int = 128,
    output_len: int = 128,
    prompts: list[str] | None = None,
    prompt_format: str = "text",
    model: str | None = None,
    pid: int | None = None,
    metrics_url: str | None = "auto",
    sample_interval: float = 0.5,
    seed: int = 0,
    timeout_s: float = 600.0,
    warmup: bool | int = True,
    extra_body: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Run one benchmark per concurrency level against URL; returns a JSON-able result dict.

    `concurrency`: a list of levels (None = unlimited), run one after another with the same
    request list. `num_requests`: per level (default max(8, 4 x level)). `metrics_url`: "auto"
    samples BASE/metrics when it serves process_resident_memory_bytes, None disables; `pid`
    samples that process (and its children) instead.
    """
    from zero2vllm.httpclient import AsyncHTTPClient

    if api not in APIS:
        raise BenchError(f"--api {api!r}: choose one of {', '.join(APIS)}")
    if burstiness <= 0:
        raise BenchError("--burstiness must be > 0")
    if request_rate <= 0:
        raise BenchError("--rate must be > 0 (or inf)")
    levels = concurrency if isinstance(concurrency, list) else [concurrency]
    base, endpoint = endpoint_url(url, api)
    # One connection per in-flight request (+1 for the memory sampler), like aiohttp's pool.
    if any(c is None for c in levels):  # unlimited: a connection per request, within fd limits
        max_conn = min(max(num_requests or 0, 256), 1000) + 1
    else:
        max_conn = max(levels) + 1
    extra = dict(extra_body or {})
    say = progress or (lambda _m: None)
    async with AsyncHTTPClient(base, max_connections=max_conn, timeout=timeout_s) as client:
        if api == "openai":
            model = model or await _discover_model(client, base)
            if not model:
                raise BenchError(f"{base}/v1/models names no model; pass --model NAME")
            extra.setdefault("model", model)
        # Memory source: the process id, else the server's /metrics if it has memory gauges.
        mem_url = None
        if not pid and metrics_url:
            candidate = base + "/metrics" if metrics_url == "auto" else metrics_url
            try:
                probe = MemorySampler(metrics_url=candidate)
                await probe.sample_once(client)
                mem_url = candidate
            except Exception:
                if metrics_url != "auto":
                    raise BenchError(f"--metrics-url {candidate}: no memory gauges there") from None
        if warmup:  # like vllm bench serve's initial test run: fail fast, and warm the server up
            probe_req = make_requests(1, input_len=min(input_len, 16), output_len=min(output_len, 4),
                                      prompts=prompts, prompt_format=prompt_format, seed=seed + 999)[0]
            func = request_generate if api == "generate" else request_openai
            r = await func(client, endpoint, probe_req, extra)
            if not r.success:
                raise BenchError(f"the warm-up request to {endpoint} failed: {r.error or 'no answer'}")
            # then full-size requests, so the first level is not measured on a cold server
            # (allocator growth, first-use kernels at this length); an int is how many
            full = make_requests(int(warmup), input_len=input_len, output_len=output_len, prompts=prompts,
                                 prompt_format=prompt_format, seed=seed + 998)
            say(f"warming up with {len(full)} full-size request(s)...")
            for req in full:
                await func(client, endpoint, req, extra)
        runs = []
        for level in levels:
            n = num_requests or max(8, 4 * (level or 2))
            reqs = make_requests(n, input_len=input_len, output_len=output_len, prompts=prompts,
                                 prompt_format=prompt_format, seed=seed)
            sampler = MemorySampler(metrics_url=mem_url, pid=pid, interval=sample_interval) \
                if (mem_url or pid) else None
            runs.append(await _run_level(client, endpoint, api, reqs, concurrency=level,
                                         rate=request_rate, burstiness=burstiness, seed=seed,
                                         extra=extra, sampler=sampler, progress=say))
    return {
        "url": base,
        "endpoint": endpoint,
        "api": api,
        "model": model,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {
            "concurrency": levels, "num_requests": num_requests, "request_rate": request_rate,
            "burstiness": burstiness, "input_len": None if prompts else input_len,
            "output_len": output_len, "prompts": len(prompts) if prompts else None,
            "prompt_format": prompt_format, "seed": seed, "pid": pid, "metrics_url": mem_url,
        },
        "runs": runs,
    }


def run_benchmark(url: str, **kwargs) -> dict:
    """Synchronous wrapper of run_benchmark_async (for commands and scripts)."""
    return asyncio.run(run_benchmark_async(url, **kwargs))


# -- presenting ---------------------------------------------------------------------------------------
def _fmt_stat(s: dict | None, key: str) -> str:
    return "n/a" if s is None else f"{s[key]:.2f}"


def format_run(run: dict) -> str:
    """One run as vllm bench serve's result block."""
    c = run["concurrency"] or "unlimited"
    rate = run["request_rate"]
    lines = [
        f"{' Serving Benchmark Result ':=^56}",
        f"{'Maximum request concurrency:':<40}{c}",
        f"{'Traffic request rate:':<40}{'inf' if not math.isfinite(rate) else f'{rate:g}'}"
        + (f" (burstiness {run['burstiness']:g})" if math.isfinite(rate) else ""),
        f"{'Successful requests:':<40}{run['completed']}",
        f"{'Failed requests:':<40}{run['failed']}",
        f"{'Benchmark duration (s):':<40}{run['duration_s']:.2f}",
        f"{'Total input tokens:':<40}{run['total_input_tokens']}",
        f"{'Total generated tokens:':<40}{run['total_output_tokens']}",
        f"{'Request throughput (req/s):':<40}{run['request_throughput']:.2f}",
        f"{'Output token throughput (tok/s):':<40}{run['output_throughput']:.2f}",
        f"{'Total token throughput (tok/s):':<40}{run['total_token_throughput']:.2f}",
    ]
    for title, key, name in (("Time to First Token", "ttft_ms", "TTFT"),
                             ("Time per Output Token (excl. 1st token)", "tpot_ms", "TPOT"),
                             ("Inter-token Latency", "itl_ms", "ITL"),
                             ("End-to-end Latency", "e2el_ms", "E2EL")):
        s = run[key]
        lines.append(f"{title:-^56}")
        for stat, label in (("mean", "Mean"), ("median", "Median"), ("p99", "P99")):
            lines.append(f"{label + ' ' + name + ' (ms):':<40}{_fmt_stat(s, stat)}")
    mem = run.get("memory")
    if mem:
        lines.append(f"{'Server memory':-^56}")
        if "rss_bytes" in mem:
            lines.append(f"{'Peak RSS (MiB):':<40}{mem['rss_bytes']['max'] / 2**20:.1f}")
        if "cuda_peak_bytes" in mem:
            lines.append(f"{'Peak CUDA allocated (MiB):':<40}{mem['cuda_peak_bytes']['max'] / 2**20:.1f}")
        if mem.get("error"):
            lines.append(f"memory sampling stopped: {mem['error']}")
    if run["errors"]:
        lines.append(f"{'Errors':-^56}")
        lines += [f"  {e}" for e in run["errors"]]
    for note in run["notes"]:
        lines.append(f"note: {note}")
    lines.append("=" * 56)
    return "\n".join(lines)


def format_summary(result: dict) -> str:
    """A compact table across concurrency levels."""
    head = f"{'conc':>6} {'ok':>5} {'req/s':>8} {'out tok/s':>10} {'E2EL med':>9} {'E2EL p99':>9} {'TTFT med':>9} {'TPOT med':>9} {'peak RSS':>9}"
    lines = [f"{result['api']} API at {result['endpoint']}", head]
    for r in result["runs"]:
        mem = r.get("memory") or {}
        rss = f"{mem['rss_bytes']['max'] / 2**20:.0f}M" if "rss_bytes" in mem else "-"
        lines.append(
            f"{str(r['concurrency'] or 'inf'):>6} {r['completed']:>5} {r['request_throughput']:>8.2f} "
            f"{r['output_throughput']:>10.1f} {_fmt_stat(r['e2el_ms'], 'median'):>9} "
            f"{_fmt_stat(r['e2el_ms'], 'p99'):>9} {_fmt_stat(r['ttft_ms'], 'median'):>9} "
            f"{_fmt_stat(r['tpot_ms'], 'median'):>9} {rss:>9}"
        )
    return "\n".join(lines)


def write_plots(result: dict, stem: Path) -> list[Path]:
    """<stem>-throughput.png (throughput vs concurrency) and <stem>-latency.png (distributions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    labels = [str(r["concurrency"] or "inf") for r in runs]
    xs = list(range(len(runs)))
    paths = []
    fig, ax1 = plt.subplots(figsize=(6.5, 4.2))
    ax1.plot(xs, [r["output_throughput"] for r in runs], "o-", color="tab:blue", label="output tok/s")
    ax1.set_xticks(xs, labels)
    ax1.set_xlabel("max concurrency")
    ax1.set_ylabel("output tokens / s", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(xs, [r["request_throughput"] for r in runs], "s--", color="tab:orange", label="req/s")
    ax2.set_ylabel("requests / s", color="tab:orange")
    ax1.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    ax1.grid(alpha=0.3)
    ax1.set_title(f"throughput vs concurrency ({result['api']} API)")
    fig.tight_layout()
    p = Path(f"{stem}-throughput.png")
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    has_ttft = any(r["samples"]["ttft_ms"] for r in runs)
    fig, axes = plt.subplots(1, 2 if has_ttft else 1, figsize=(11 if has_ttft else 6.5, 4.2), squeeze=False)
    ax = axes[0][0]
    data = [r["samples"]["e2el_ms"] or [0.0] for r in runs]
    ax.boxplot(data, showfliers=True)
    ax.set_xticks(range(1, len(runs) + 1), labels)
    ax.set_xlabel("max concurrency")
    ax.set_ylabel("E2EL (ms)")
    ax.set_title("end-to-end latency per request")
    ax.grid(alpha=0.3)
    if has_ttft:
        ax = axes[0][1]
        ax.boxplot([r["samples"]["ttft_ms"] or [0.0] for r in runs], showfliers=True)
        ax.set_xticks(range(1, len(runs) + 1), labels)
        ax.set_xlabel("max concurrency")
        ax.set_ylabel("TTFT (ms)")
        ax.set_title("time to first token")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    p = Path(f"{stem}-latency.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths


def flat_trend(result: dict) -> dict | None:
    """How output throughput changes from the lowest to the highest concurrency level."""
    runs = [r for r in result["runs"] if r["completed"]]
    if len(runs) < 2 or runs[0]["output_throughput"] <= 0:
        return None
    lo, hi = runs[0], runs[-1]
    return {"from_concurrency": lo["concurrency"], "to_concurrency": hi["concurrency"],
            "ratio": hi["output_throughput"] / lo["output_throughput"]}


def to_json(result: dict) -> str:
    def default(o):
        if isinstance(o, float) and not math.isfinite(o):
            return str(o)
        return asdict(o) if hasattr(o, "__dataclass_fields__") else str(o)

    def clean(o):
        if isinstance(o, float) and not math.isfinite(o):
            return "inf" if o > 0 else "-inf"
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o

    return json.dumps(clean(result), indent=2, default=default)
