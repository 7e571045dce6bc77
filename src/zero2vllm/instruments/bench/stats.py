"""The metric definitions of `vllm bench serve`: percentiles, TTFT/TPOT/ITL/E2EL summaries,
throughput, and the flat-throughput trend of the naive API."""

from __future__ import annotations

import math
import statistics

from .requests import RequestResult


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


def flat_trend(result: dict) -> dict | None:
    """How output throughput changes from the lowest to the highest concurrency level."""
    runs = [r for r in result["runs"] if r["completed"]]
    if len(runs) < 2 or runs[0]["output_throughput"] <= 0:
        return None
    lo, hi = runs[0], runs[-1]
    return {"from_concurrency": lo["concurrency"], "to_concurrency": hi["concurrency"],
            "ratio": hi["output_throughput"] / lo["output_throughput"]}
