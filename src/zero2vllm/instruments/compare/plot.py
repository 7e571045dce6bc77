"""The compare plot: throughput and latency per concurrency, one line per target."""

from __future__ import annotations

import math
from pathlib import Path

from .targets import VLLM


def write_plot(result: dict, path: Path) -> Path:
    """One PNG: throughput and median E2EL per concurrency for each target, and vLLM's batch
    (running requests) and KV cache use over the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = result["config"]["concurrency"]
    labels = [str(c or "inf") for c in levels]
    xs = list(range(len(levels)))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for t in result["targets"]:
        by = {r["concurrency"]: r for r in t["runs"]}
        pts = [(i, by[c]) for i, c in zip(xs, levels) if c in by]
        if not pts:
            continue
        axes[0].plot([i for i, _ in pts], [r["output_throughput"] for _, r in pts], "o-", label=t["name"])
        axes[1].plot([i for i, _ in pts], [(r["e2el_ms"] or {}).get("median", 0) / 1e3 for _, r in pts],
                     "o-", label=t["name"])
    for ax, title, ylabel in ((axes[0], "output throughput", "tokens / s"),
                              (axes[1], "median end-to-end latency", "seconds")):
        ax.set_xticks(xs, labels)
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    ax = axes[2]
    vllm = next((t for t in result["targets"] if t["name"] == VLLM and t["runs"]), None)
    shown = vllm or next((t for t in result["targets"] if t["runs"]), None)
    if shown:
        offset = 0.0
        times, running, kv = [], [], []
        for r in shown["runs"]:
            samples = r.get("server_samples") or []
            for s in samples:
                times.append(offset + s["t"])
                running.append(s.get("running", 0))
                kv.append(100 * s.get("kv_usage", 0))
            if samples:
                ax.axvline(offset, color="grey", lw=0.5)
                ax.text(offset, 0, f" c={r['concurrency'] or 'inf'}", fontsize=8, va="bottom")
                offset += samples[-1]["t"] + 1
        handles = ax.plot(times, running, color="tab:green", label="requests running")
        ax.set_ylabel("requests running")
        ax.set_xlabel("seconds into the run")
        ax.set_title(f"{shown['name']}: batch size over time")
        if any(kv):
            ax2 = ax.twinx()
            handles += ax2.plot(times, kv, color="tab:red", alpha=0.6, label="KV cache used %")
            ax2.set_ylabel("KV cache used (%)", color="tab:red")
            ax2.set_ylim(bottom=0)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(handles=handles, loc="upper left")
    cfg = result["config"]
    fig.suptitle(f"{cfg['model']}, {cfg['output_len']} output tokens per request, "
                 f"{result['machine']}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _clean(o):
    if isinstance(o, float) and not math.isfinite(o):
        return "inf" if o > 0 else "-inf"
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_clean(v) for v in o]
    return o
