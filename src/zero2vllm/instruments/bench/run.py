"""Running a benchmark: arrivals (all at once or gamma/Poisson gaps), the concurrency limit,
memory sampling, and `run_benchmark()`, the JSON-able result every caller uses."""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time
from typing import Any, Callable

from .requests import (
    APIS, BenchError, BenchRequest, RequestResult, endpoint_url, make_requests,
    request_generate, request_openai,
)
from .stats import compute_metrics


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
        from zero2vllm.instruments.metrics import parse_prometheus

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
    from zero2vllm.instruments.httpclient import AsyncHTTPClient

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
        for i, level in enumerate(levels):
            n = num_requests or max(8, 4 * (level or 2))
            # new prompts at each level: the same ones again would be served from the prefix cache
            reqs = make_requests(n, input_len=input_len, output_len=output_len, prompts=prompts,
                                 prompt_format=prompt_format, seed=seed + i)
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
