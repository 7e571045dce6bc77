"""The side-by-side table and the plain-words explanation of why the targets differ, and the
numbers a lab run keeps."""

from __future__ import annotations


from .targets import NAIVE, VLLM


# -- presenting ----------------------------------------------------------------------------------
def rows(result: dict) -> list[dict]:
    """One row per (concurrency, target), with the speed-up over the first target at that level."""
    out = []
    base_name = result["targets"][0]["name"] if result["targets"] else None
    levels = result["config"]["concurrency"]
    by = {(t["name"], r["concurrency"]): r for t in result["targets"] for r in t["runs"]}
    for level in levels:
        base = by.get((base_name, level))
        for t in result["targets"]:
            r = by.get((t["name"], level))
            if r is None:
                continue
            sm = r.get("server_metrics") or {}
            speedup = None
            if base and base["output_throughput"] > 0:
                speedup = r["output_throughput"] / base["output_throughput"]
            out.append({
                "concurrency": level, "target": t["name"],
                "ok": f"{r['completed']}/{r['num_requests']}",
                "output_tok_s": r["output_throughput"], "req_s": r["request_throughput"],
                "ttft_median_ms": (r["ttft_ms"] or {}).get("median"),
                "tpot_median_ms": (r["tpot_ms"] or {}).get("median"),
                "e2el_median_ms": (r["e2el_ms"] or {}).get("median"),
                "e2el_p99_ms": (r["e2el_ms"] or {}).get("p99"),
                "running_max": sm.get("running_max"), "waiting_max": sm.get("waiting_max"),
                "kv_usage_max": sm.get("kv_usage_max"), "preemptions": sm.get("preemptions"),
                "kv_util": sm.get("kv_util"),
                "others_cpu": (r.get("cpu") or {}).get("others_frac"),
                "x_first": speedup,
            })
    return out


def _f(v, fmt: str = "{:.1f}") -> str:
    return "n/a" if v is None else fmt.format(v)


COLUMNS = [
    ("conc", lambda r: str(r["concurrency"] or "inf")),
    ("target", lambda r: r["target"]),
    ("ok", lambda r: r["ok"]),
    ("out tok/s", lambda r: _f(r["output_tok_s"])),
    ("x base", lambda r: _f(r["x_first"], "{:.2f}x")),
    ("req/s", lambda r: _f(r["req_s"], "{:.2f}")),
    ("TTFT med ms", lambda r: _f(r["ttft_median_ms"], "{:.0f}")),
    ("TPOT med ms", lambda r: _f(r["tpot_median_ms"], "{:.1f}")),
    ("E2EL med ms", lambda r: _f(r["e2el_median_ms"], "{:.0f}")),
    ("E2EL p99 ms", lambda r: _f(r["e2el_p99_ms"], "{:.0f}")),
    ("running max", lambda r: _f(r["running_max"], "{:.0f}")),
    ("waiting max", lambda r: _f(r["waiting_max"], "{:.0f}")),
    ("KV used max", lambda r: _f(None if r["kv_usage_max"] is None else 100 * r["kv_usage_max"],
                                 "{:.1f}%")),
    ("preempt", lambda r: _f(r["preemptions"], "{:.0f}")),
    ("KV util", lambda r: _f(None if r["kv_util"] is None else 100 * r["kv_util"], "{:.1f}%")),
    ("other CPU", lambda r: _f(None if r["others_cpu"] is None else 100 * r["others_cpu"], "{:.0f}%")),
]


def format_table(result: dict, *, markdown: bool = False) -> str:
    table = rows(result)
    cells = [[fmt(r) for _, fmt in COLUMNS] for r in table]
    heads = [h for h, _ in COLUMNS]
    if markdown:
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]
    line = lambda cs: "  ".join(c.rjust(w) if i > 1 else c.ljust(w)  # noqa: E731
                                for i, (c, w) in enumerate(zip(cs, widths))).rstrip()
    out = [line(heads)]
    prev = None
    for r, c in zip(table, cells):
        if prev is not None and r["concurrency"] != prev:
            out.append("")
        prev = r["concurrency"]
        out.append(line(c))
    return "\n".join(out)


def explain(result: dict) -> list[str]:
    """Plain sentences tying the numbers to continuous batching and PagedAttention."""
    lines = []
    targets = {t["name"]: t for t in result["targets"]}
    naive, vllm = targets.get(NAIVE), targets.get(VLLM)
    for t in result["targets"]:
        if t.get("error"):
            lines.append(f"{t['name']}: not measured: {t['error'].splitlines()[0]}")
    busy = [(t["name"], r["concurrency"], r["cpu"]["others_frac"]) for t in result["targets"]
            for r in t["runs"] if ((r.get("cpu") or {}).get("others_frac") or 0) > 0.1]
    if busy:
        lines.append("Careful: other processes used the CPU during the run ("
                     + ", ".join(f"{n} at {c or 'inf'}: {100 * f:.0f}% of all cores" for n, c, f in busy)
                     + "); those levels are pessimistic: rerun on a quiet machine to trust them.")
    if result["config"].get("rounds", 1) > 1:
        lines.append(f"Over {result['config']['rounds']} rounds in alternating order, output tok/s at the highest "
                     "level (the table shows each target's median round): " + "; ".join(
                         f"{t['name']} " + ", ".join(f"{r[-1]:.1f}" for r in t["rounds"])
                         for t in result["targets"] if t.get("rounds")) + ".")
    lines += _others(result, naive, vllm)
    if not (naive and vllm and naive["runs"] and vllm["runs"]):
        return lines
    levels = [r["concurrency"] for r in vllm["runs"] if any(
        n["concurrency"] == r["concurrency"] for n in naive["runs"])]
    if not levels:
        return lines
    top = levels[-1]
    n_top = next(r for r in naive["runs"] if r["concurrency"] == top)
    v_top = next(r for r in vllm["runs"] if r["concurrency"] == top)
    n_low = naive["runs"][0]
    v_low = vllm["runs"][0]
    if n_top["output_throughput"] > 0:
        lines.append(f"At concurrency {top or 'inf'}, vLLM generates "
                     f"{v_top['output_throughput'] / n_top['output_throughput']:.1f}x the naive API's "
                     f"output tokens per second ({v_top['output_throughput']:.0f} vs "
                     f"{n_top['output_throughput']:.0f}).")
    ns, vs = n_top.get("server_metrics") or {}, v_top.get("server_metrics") or {}
    if ns.get("running_max") is not None:
        lines.append(f"Naive API: at most {ns['running_max']:.0f} request in the model at a time; the "
                     f"others wait for its lock, so its throughput stays flat "
                     f"({n_low['output_throughput']:.0f} -> {n_top['output_throughput']:.0f} tok/s) and "
                     f"its median E2EL grows {_ratio(n_top, n_low)} from concurrency "
                     f"{n_low['concurrency'] or 'inf'} to {top or 'inf'}.")
    if vs.get("running_max") is not None:
        kv = vs.get("kv_usage_max")
        lines.append(f"vLLM: up to {vs['running_max']:.0f} requests running in the same forward passes "
                     f"(continuous batching: a new request joins the batch at the next step, a "
                     f"finished one leaves it), {vs.get('waiting_max', 0):.0f} waiting at most; "
                     f"median E2EL grows {_ratio(v_top, v_low)} while throughput grows "
                     f"{v_top['output_throughput'] / max(v_low['output_throughput'], 1e-9):.1f}x.")
        if kv is not None:
            lines.append(f"KV cache: at most {100 * kv:.1f}% of vLLM's blocks in use, "
                         f"{vs.get('preemptions', 0):.0f} preemptions: PagedAttention hands out "
                         "16-token blocks as sequences grow, so nothing is reserved for tokens "
                         "that are never generated (the paper: 96.3% of KV memory holds real tokens, "
                         "against 20.4-38.2% in Orca).")
    return lines


def _others(result: dict, naive: dict | None, vllm: dict | None) -> list[str]:
    """A sentence per other target (e.g. zero2vllm's engine): its throughput against the naive API
    and vLLM at the highest level all three completed, and its KV utilisation where it reports it."""
    lines = []
    for t in result["targets"]:
        if t["name"] in (NAIVE, VLLM) or not t["runs"]:
            continue
        top = t["runs"][-1]
        level = top["concurrency"]
        parts = []
        for other, label in ((vllm, "vLLM's"), (naive, "the naive API's")):
            match = [r for r in (other or {}).get("runs", []) if r["concurrency"] == level]
            if match and match[0]["output_throughput"] > 0:
                parts.append(f"{top['output_throughput'] / match[0]['output_throughput']:.2f}x {label}")
        if parts:
            lines.append(f"{t['name']}: {top['output_throughput']:.1f} output tok/s at concurrency "
                         f"{level or 'inf'}, " + " and ".join(parts) + ".")
        sm = top.get("server_metrics") or {}
        if sm.get("kv_util") is not None:
            lines.append(f"{t['name']}: {100 * sm['kv_util']:.1f}% of its allocated KV slots held tokens "
                         f"(mean over the level's steps); a cache reserving max_model_len per request "
                         f"would have used {100 * sm['kv_util_contiguous']:.1f}% on the same steps. "
                         "Paging wastes only the unfilled end of each sequence's last block (half a "
                         "block on average), which weighs more the shorter the sequences are.")
    return lines


def _ratio(hi: dict, lo: dict) -> str:
    a, b = (hi["e2el_ms"] or {}).get("median"), (lo["e2el_ms"] or {}).get("median")
    return f"{a / b:.1f}x" if a and b else "n/a"


def lab_metrics(result: dict) -> dict:
    """What the store keeps (and the `vllm` lab shows as evidence): the table, not the samples.

    Plus plain number lists against "concurrency" (vllm_output_tok_s, naive_e2el_median_ms...),
    which the dashboard plots for any lab run."""
    series: dict = {}
    levels = result["config"]["concurrency"]
    if all(isinstance(c, int) for c in levels):
        series["concurrency"] = levels
        for t in result["targets"]:
            by = {r["concurrency"]: r for r in t["runs"]}
            if all(c in by for c in levels):
                series[f"{t['name']}_output_tok_s"] = [round(by[c]["output_throughput"], 2) for c in levels]
                series[f"{t['name']}_e2el_median_ms"] = [
                    round((by[c]["e2el_ms"] or {}).get("median") or 0.0, 1) for c in levels]
    return {
        **series,
        "table": rows(result),
        "table_text": format_table(result),
        "explanation": explain(result),
        "config": result["config"],
        "machine": result["machine"],
        "targets": [{k: t[k] for k in ("name", "kind", "api", "url", "ready_s", "error", "model")}
                    for t in result["targets"]],
        "speedup_at_max": speedup_at_max(result),
    }


def speedup_at_max(result: dict) -> float | None:
    """vLLM's output throughput over the naive API's at the highest level both completed."""
    targets = {t["name"]: t for t in result["targets"]}
    n, v = targets.get(NAIVE), targets.get(VLLM)
    if not (n and v):
        return None
    nb = {r["concurrency"]: r for r in n["runs"] if r["completed"]}
    vb = {r["concurrency"]: r for r in v["runs"] if r["completed"]}
    common = [c for c in result["config"]["concurrency"] if c in nb and c in vb]
    if not common or nb[common[-1]]["output_throughput"] <= 0:
        return None
    return vb[common[-1]]["output_throughput"] / nb[common[-1]]["output_throughput"]
