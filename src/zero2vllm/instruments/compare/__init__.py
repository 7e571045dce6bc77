"""`z2v compare`: the naive API and real vLLM under the same load, side by side, and why they differ.

Every target gets the same benchmark (zero2vllm.instruments.bench.run_benchmark: same prompts, same seed,
same output length with ignore_eos, same concurrency levels), one target at a time so they never
share the CPU. While a target is measured, a thread reads its Prometheus /metrics every second;
for vLLM that shows the mechanism behind the numbers:

  vllm:num_requests_running   how many sequences share each forward pass (continuous batching)
  vllm:num_requests_waiting   requests queued because the batch or the KV cache is full
  vllm:kv_cache_usage_perc    fraction of the pre-allocated KV blocks in use (PagedAttention)
  vllm:num_preemptions        sequences evicted (and recomputed) because KV blocks ran out

The naive API reports z2v_requests_running, which never exceeds 1 (its lock is the whole story),
and z2v_requests_in_flight, from which the requests waiting for that lock follow.

Targets are URLs the user gives, or servers this module starts itself on free ports and stops
afterwards (`z2v serve naive` in a child process, `vllm serve` through zero2vllm.realvllm.serve).

The work is split by job: `targets` (what is compared and how it is configured), `servers`
(starting and stopping the servers compare runs itself), `scrape` (reading their /metrics while
they are measured), `run` (measuring each target in turn), `explain` (the table and the reasons
behind the numbers) and `plot`. This package re-exports their public names.
"""

from .targets import (
    CompareConfig, CompareError, ENGINE, NAIVE, Target, VLLM, detect_api, free_port,
    parse_target,
)
from .scrape import SCRAPED, Scraper, read_metrics, summarize_scrape
from .servers import ChildServer, preflight
from .run import CpuShare, build_result, machine_description, requests_for, run_compare
from .explain import COLUMNS, explain, format_table, lab_metrics, rows, speedup_at_max
from .plot import write_plot

__all__ = [
    "CompareConfig",
    "CompareError",
    "ENGINE",
    "NAIVE",
    "Target",
    "VLLM",
    "detect_api",
    "free_port",
    "parse_target",
    "SCRAPED",
    "Scraper",
    "read_metrics",
    "summarize_scrape",
    "ChildServer",
    "preflight",
    "CpuShare",
    "build_result",
    "machine_description",
    "requests_for",
    "run_compare",
    "COLUMNS",
    "explain",
    "format_table",
    "lab_metrics",
    "rows",
    "speedup_at_max",
    "write_plot",
]
