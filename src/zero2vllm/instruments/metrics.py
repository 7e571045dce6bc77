"""Prometheus text exposition, by hand: counters, gauges and histograms for a serving process.

No prometheus_client dependency: the format is a few lines of text
(https://prometheus.io/docs/instrumenting/exposition_formats/), and writing it out shows the
learner exactly what a scraper sees. Thread-safe: Flask serves requests on several threads.
`parse_prometheus` reads it back (the benchmark samples a server's memory from it).
"""

from __future__ import annotations

import os
import threading

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def _labels(labels: dict | None) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{str(v)}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


class Histogram:
    def __init__(self, buckets=LATENCY_BUCKETS):
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{b}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        out.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        out.append(f"{name}_sum {self.sum:.6f}")
        out.append(f"{name}_count {self.count}")
        return out


class Metrics:
    """The counters a serving process keeps; `render()` gives the /metrics text."""

    def __init__(self, prefix: str = "z2v"):
        self.prefix = prefix
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}  # (endpoint, status code) -> count
        self.histograms: dict[str, Histogram] = {}
        self.counters: dict[str, float] = {}
        self.gauges: dict[str, float] = {}
        self.help: dict[str, str] = {}

    def count_request(self, endpoint: str, code: int) -> None:
        with self.lock:
            key = (endpoint, int(code))
            self.requests[key] = self.requests.get(key, 0) + 1

    def inc(self, name: str, value: float = 1.0, help: str = "") -> None:
        with self.lock:
            self.counters[name] = self.counters.get(name, 0.0) + value
            if help:
                self.help.setdefault(name, help)

    def set(self, name: str, value: float, help: str = "") -> None:
        with self.lock:
            self.gauges[name] = value
            if help:
                self.help.setdefault(name, help)

    def add(self, name: str, delta: float) -> None:
        with self.lock:
            self.gauges[name] = self.gauges.get(name, 0.0) + delta

    def observe(self, name: str, seconds: float, help: str = "") -> None:
        with self.lock:
            self.histograms.setdefault(name, Histogram()).observe(seconds)
            if help:
                self.help.setdefault(name, help)

    def render(self) -> str:
        p = self.prefix
        lines = [f"# HELP {p}_requests_total HTTP requests by endpoint and status code.",
                 f"# TYPE {p}_requests_total counter"]
        with self.lock:
            for (endpoint, code), n in sorted(self.requests.items()):
                lines.append(f"{p}_requests_total{_labels({'endpoint': endpoint, 'code': code})} {n}")
            for name, value in sorted(self.counters.items()):
                full = f"{p}_{name}"
                if name in self.help:
                    lines.append(f"# HELP {full} {self.help[name]}")
                lines += [f"# TYPE {full} counter", f"{full} {value:g}"]
            for name, value in sorted(self.gauges.items()):
                full = f"{p}_{name}"
                if name in self.help:
                    lines.append(f"# HELP {full} {self.help[name]}")
                lines += [f"# TYPE {full} gauge", f"{full} {value:g}"]
            for name, hist in sorted(self.histograms.items()):
                full = f"{p}_{name}"
                if name in self.help:
                    lines.append(f"# HELP {full} {self.help[name]}")
                lines.append(f"# TYPE {full} histogram")
                lines += hist.lines(full)
        lines += process_memory_lines()
        return "\n".join(lines) + "\n"


def process_memory_lines() -> list[str]:
    """Standard process_* memory gauges, plus CUDA memory when torch has a GPU in use."""
    lines = []
    try:
        import psutil

        mem = psutil.Process(os.getpid()).memory_info()
        lines += [
            "# HELP process_resident_memory_bytes Resident memory size in bytes.",
            "# TYPE process_resident_memory_bytes gauge",
            f"process_resident_memory_bytes {mem.rss}",
            "# HELP process_virtual_memory_bytes Virtual memory size in bytes.",
            "# TYPE process_virtual_memory_bytes gauge",
            f"process_virtual_memory_bytes {mem.vms}",
        ]
    except Exception:  # psutil missing: the memory lines are simply absent
        pass
    import sys

    torch = sys.modules.get("torch")  # never import torch just for this
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        lines += [
            "# HELP z2v_cuda_memory_allocated_bytes CUDA memory held by tensors now.",
            "# TYPE z2v_cuda_memory_allocated_bytes gauge",
            f"z2v_cuda_memory_allocated_bytes {torch.cuda.memory_allocated()}",
            "# HELP z2v_cuda_max_memory_allocated_bytes Peak CUDA memory held by tensors.",
            "# TYPE z2v_cuda_max_memory_allocated_bytes gauge",
            f"z2v_cuda_max_memory_allocated_bytes {torch.cuda.max_memory_allocated()}",
            "# HELP z2v_cuda_memory_reserved_bytes CUDA memory reserved by the caching allocator.",
            "# TYPE z2v_cuda_memory_reserved_bytes gauge",
            f"z2v_cuda_memory_reserved_bytes {torch.cuda.memory_reserved()}",
        ]
    return lines


def parse_prometheus(text: str) -> dict[str, float]:
    """{'name{labels}': value} for every sample line; comments and junk are skipped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            if "}" in line:
                key, _, rest = line.rpartition("}")
                key += "}"
            else:
                key, _, rest = line.partition(" ")
            out[key.strip()] = float(rest.split()[0])
        except (ValueError, IndexError):
            continue
    return out
