"""What `z2v compare` compares: targets (a URL, or a server it starts: naive, vLLM, the engine)
and the run's configuration."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field


NAIVE, VLLM, ENGINE = "naive", "vllm", "engine"


class CompareError(Exception):
    """The comparison cannot run (bad target, server failed to start); one line says why."""


@dataclass
class Target:
    name: str
    url: str | None  # None: start the server ourselves
    api: str  # "generate" (naive) or "openai" (vLLM and other OpenAI-compatible servers)
    kind: str = "url"  # "naive" / "vllm" / "engine" when we start it, "url" for a given server
    pid: int | None = None  # the server's process, when we started it (memory is sampled from it)
    result: dict | None = None
    scrape: list[dict] = field(default_factory=list)
    error: str | None = None
    ready_s: float | None = None
    rounds: list[dict] = field(default_factory=list)  # one result per round; `result` is the median one


@dataclass
class CompareConfig:
    concurrency: list[int | None] = field(default_factory=lambda: [1, 4, 16])
    # Requests per level: one number for all, a list with one per level, or None for
    # max(8, 4 x level) as in z2v bench.
    num_requests: int | list[int] | None = None
    input_len: int = 128
    output_len: int = 64
    seed: int = 0
    model: str = "smollm2"
    vllm_eager: bool = True
    kv_cache_gib: int = 2
    timeout_s: float = 600.0
    start_timeout_s: float = 900.0
    scrape_interval_s: float = 1.0
    rounds: int = 1  # > 1: measure every target again, in reversed order every other round


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_target(text: str) -> Target:
    """NAME=URL; the API is found by asking the server (OpenAI /v1/models, else /generate)."""
    name, sep, url = text.partition("=")
    name, url = name.strip(), url.strip()
    if not sep or not name or not url.startswith(("http://", "https://")):
        raise CompareError(f"--target {text!r}: give NAME=URL, e.g. mine=http://127.0.0.1:9000")
    return Target(name, url.rstrip("/"), api="?")


def detect_api(url: str) -> str:
    if _get(url + "/v1/models") is not None:
        return "openai"
    if _get(url + "/health") is not None:
        return "generate"
    raise CompareError(f"{url} does not answer (neither /v1/models nor /health); is the server running?")


def _get(url: str, timeout: float = 3.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read() if resp.status == 200 else None
    except (OSError, urllib.error.URLError):
        return None


# -- reading /metrics during a run ---------------------------------------------------------------
# Our name -> the Prometheus sample names that carry it (vLLM's, then the naive API's).
