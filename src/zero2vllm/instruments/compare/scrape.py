"""Reading a target's Prometheus /metrics every second while it is measured: running and waiting
requests, KV cache use, preemptions."""

from __future__ import annotations

import threading
import time

from .targets import _get


# -- reading /metrics during a run ---------------------------------------------------------------
# Our name -> the Prometheus sample names that carry it (vLLM's, then the naive API's).
SCRAPED = {
    "running": ("vllm:num_requests_running", "z2v_requests_running"),
    "waiting": ("vllm:num_requests_waiting",),
    "in_flight": ("z2v_requests_in_flight",),  # the naive API: running + waiting for the lock
    "kv_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "preemptions": ("vllm:num_preemptions_total",),
    "generated": ("vllm:generation_tokens_total",),
    # zero2vllm's engine: sums of its per-step KV utilisation, so a level's mean is a difference
    "kv_steps": ("z2v_engine_kv_steps_total",),
    "kv_util_sum": ("z2v_engine_kv_utilization_sum_total",),
    "kv_contiguous_sum": ("z2v_engine_kv_utilization_contiguous_sum_total",),
}


def read_metrics(text: str) -> dict[str, float]:
    """Our few numbers from a /metrics page, summed over label sets (one engine, one model)."""
    from zero2vllm.instruments.metrics import parse_prometheus

    values = parse_prometheus(text)
    out: dict[str, float] = {}
    for ours, names in SCRAPED.items():
        for name in names:
            found = [v for k, v in values.items() if k == name or k.startswith(name + "{")]
            if found:
                out[ours] = sum(found)
                break
    if "in_flight" in out and "waiting" not in out:
        out["waiting"] = max(0.0, out["in_flight"] - out.get("running", 0.0))
    return out


class Scraper:
    """A thread that samples BASE/metrics every `interval` seconds until stopped."""

    def __init__(self, base: str, interval: float = 1.0):
        self.url, self.interval = base + "/metrics", interval
        self.samples: list[dict] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.t0 = time.perf_counter()

    def start(self) -> "Scraper":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def _sample(self) -> None:
        body = _get(self.url, timeout=5)
        if body is not None:
            sample = read_metrics(body.decode("utf-8", "replace"))
            sample["t"] = round(time.perf_counter() - self.t0, 3)
            self.samples.append(sample)
        elif not self.samples:
            self.error = f"{self.url} did not answer"

    def stop(self) -> list[dict]:
        """Stop, after one last sample: counters then cover the whole level, however short."""
        self._stop.set()
        self._thread.join(timeout=10)
        self._sample()
        return self.samples


def summarize_scrape(samples: list[dict]) -> dict:
    """Peaks and means over one level's samples; counters as the increase during the level."""
    out: dict = {"n": len(samples)}
    busy = [s for s in samples if s.get("running", 0) > 0]
    for key in ("running", "waiting", "kv_usage"):
        vals = [s[key] for s in samples if key in s]
        if vals:
            out[f"{key}_max"] = max(vals)
            busy_vals = [s[key] for s in busy if key in s]
            out[f"{key}_mean_busy"] = (sum(busy_vals) / len(busy_vals)) if busy_vals else 0.0
    for key in ("preemptions", "generated", "kv_steps", "kv_util_sum", "kv_contiguous_sum"):
        vals = [s[key] for s in samples if key in s]
        if vals:
            out[key] = max(vals) - min(vals)
    if out.get("kv_steps"):  # the engine's mean over the level's steps: tokens stored / slots allocated
        out["kv_util"] = out["kv_util_sum"] / out["kv_steps"]
        out["kv_util_contiguous"] = out["kv_contiguous_sum"] / out["kv_steps"]
    return out


# -- the servers we start ------------------------------------------------------------------------
