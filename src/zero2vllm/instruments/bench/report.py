"""Showing a benchmark's result: text tables, plots and JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path


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
