"""From a saved engine trace to what the Engine trace page draws: each sequence's rows and\ncells, who holds which block at each step, the selected step's block tables and texts."""

from __future__ import annotations

from zero2vllm.web.trace_svg import (
    STATES, _pos, block_table_svg, pool_svg, row_colour, timeline_svg,
)


MAX_DRAWN_STEPS = 300


_NAMES = "0123456789abcdefghijklmnopqrstuvwxyz"  # the pool map's characters (engine/trace.py)


def _state_of(kind: str) -> str:
    return kind if kind in STATES else ("recompute" if kind.startswith("recompute") else "prefill")


def walk(record: dict, selected: int | None = None) -> dict:
    """Replay the saved steps: per step and sequence the state drawn in the timeline, per step
    each block's holder, and at step SELECTED every sequence's block table and text so far.

    Rounds (--repeat) follow one another on one engine, so they share one step axis: round 2's
    sequences get their own rows below round 1's."""
    bs = record["block_size"]
    prompts = record.get("settings", {}).get("prompts") or []
    multi = len(record["rounds"]) > 1
    rows, steps = [], []
    for r, rd in enumerate(record["rounds"]):
        base = len(rows)
        for req in rd["requests"]:
            i = req["seq"]
            rows.append({"row": base + i, "round": r, "seq": i,
                         "label": f"r{r + 1} seq {i}" if multi else f"seq {i}",
                         "prompt": prompts[i] if i < len(prompts) else "", "req": req,
                         "first": None, "last": None, "cached": 0})
        for st in rd["steps"]:
            steps.append({"n": len(steps) + 1, "round": r, "base": base, "count": len(rd["requests"]), "s": st})
    live = {row["row"]: {"status": "new", "table": [], "computed": 0, "cached_blocks": 0, "text": [],
                         "finished_at": None} for row in rows}
    cells: list[dict[int, tuple]] = []   # per step: row -> (state, work item or None)
    holders: list[list[tuple]] = []      # per step: per block, what holds it
    snapshot = None
    for g in steps:
        st, base, n = g["s"], g["base"], g["count"]
        work = {base + w["seq"]: w for w in st["work"]}
        preempted = {base + s for s in st["preempted"]}
        here: dict[int, tuple] = {}
        for row in range(base, base + n):
            info = live[row]
            if row in work:
                w = work[row]
                info["table"], info["computed"] = list(w["block_table"]), w["positions"][1]
                if w["cached_tokens"]:
                    info["cached_blocks"] = w["cached_tokens"] // bs
                    rows[row]["cached"] = max(rows[row]["cached"], w["cached_tokens"])
                if w["sampled"] is not None:
                    info["text"].append(w["sampled"])
                info["status"] = "finished" if w["finished"] else "running"
                if w["finished"]:
                    info["finished_at"] = g["n"]
                rows[row]["first"] = rows[row]["first"] or g["n"]
                rows[row]["last"] = g["n"]
                here[row] = (_state_of(w["kind"]), w)
            elif row in preempted:
                info.update(status="waiting", table=[], computed=0, cached_blocks=0)
                here[row] = ("preempted", None)
            elif info["status"] == "finished":
                here[row] = ("finished", None)
            elif info["status"] == "running":
                here[row] = ("stalled", None)
            else:
                here[row] = ("waiting", None)
        for row in range(base):  # earlier rounds: done
            here[row] = ("finished", None)
        cells.append(here)
        holders.append(_holders(st["pool"], live, range(base, base + n), base))
        if g["n"] == selected:
            snapshot = {row: {**live[row], "table": list(live[row]["table"]), "text": list(live[row]["text"])}
                        for row in range(base, base + n)}
    return {"rows": rows, "steps": steps, "cells": cells, "holders": holders, "snapshot": snapshot}


def _holders(pool: str, live: dict, round_rows, base: int) -> list[tuple]:
    """Per block: ("free",), ("cached",), ("seq", row) or ("shared", rows), from the step's pool map
    (the engine's truth) and the live block tables (to name who shares a block)."""
    by_block: dict[int, list[int]] = {}
    for row in round_rows:
        if live[row]["status"] == "running":
            for b in live[row]["table"]:
                by_block.setdefault(b, []).append(row)
    out = []
    for b, c in enumerate(pool):
        if c == ".":
            out.append(("free",))
        elif c == "~":
            out.append(("cached",))
        elif c == "*":
            out.append(("shared", tuple(by_block.get(b, ()))))
        else:
            held = by_block.get(b)
            out.append(("seq", held[0] if held and len(held) == 1 else base + _NAMES.index(c)))
    return out


def build_view(record: dict, step: int | None, page_url: str) -> dict:
    """Everything the template draws for one saved trace, with step STEP selected."""
    total = sum(len(rd["steps"]) for rd in record["rounds"])
    sel = min(max(step or 1, 1), total) if total else 0
    data = walk(record, sel)
    if total > MAX_DRAWN_STEPS:
        lo = max(1, min(sel - MAX_DRAWN_STEPS // 2, total - MAX_DRAWN_STEPS + 1))
        window = (lo, lo + MAX_DRAWN_STEPS - 1)
    else:
        window = (1, total)
    link = lambda n: f"{page_url}?step={n}"  # noqa: E731
    rows = data["rows"]
    view = {"total": total, "selected": sel, "window": window, "rows": rows, "link": link,
            "prev": link(sel - 1) if sel > 1 else None, "next": link(sel + 1) if sel < total else None,
            "colours": {r["row"]: row_colour(r["row"]) for r in rows}}
    if not total:
        return view
    view["timeline"] = timeline_svg(record, data, window, sel, link)
    view["pool"] = pool_svg(record, data, window, sel, link)
    view["step"] = step_view(record, data, sel)
    view["requests"] = request_rows(data)
    if window != (1, total):
        half = MAX_DRAWN_STEPS // 2
        view["earlier"] = link(max(1, window[0] - half)) if window[0] > 1 else None
        view["later"] = link(min(total, window[1] + half)) if window[1] < total else None
    return view


def step_view(record: dict, data: dict, sel: int) -> dict:
    """The selected step: what the scheduler did, and each sequence's block table after it."""
    bs = record["block_size"]
    g = data["steps"][sel - 1]
    st, base = g["s"], g["base"]
    rows = data["rows"]
    snap = data["snapshot"] or {}
    cells = data["cells"][sel - 1]
    owners: dict[int, list[int]] = {}
    for row, info in snap.items():
        if info["status"] == "running":
            for b in info["table"]:
                owners.setdefault(b, []).append(row)
    tables = []
    for row in range(base, base + g["count"]):
        info, (state, w) = snap[row], cells[row]
        r = rows[row]
        if w is not None:
            a, b = w["positions"]
            doing = f"{w['kind']} {_pos(a, b)}" + (f" ({w['cached_tokens']} from cache)" if w["cached_tokens"] else "")
        else:
            doing = {"preempted": "preempted: blocks freed, will be recomputed", "waiting": "waiting",
                     "stalled": "running, no budget left this step",
                     "finished": f"finished at step {info['finished_at']}"}[state]
        show = info["status"] == "running" or (w is not None and w["finished"])
        svg = block_table_svg(r, info["table"] if show else [], info["computed"], bs, info["cached_blocks"],
                              owners, rows, freed=info["status"] == "finished")
        tables.append({"row": r, "state": state, "colour": STATES[state][0], "doing": doing, "svg": svg,
                       "table": info["table"] if show else [], "text": "".join(info["text"]),
                       "note": ("blocks returned to the pool (full ones stay prefix-cached)"
                                if info["status"] == "finished" else
                                "no blocks" if not show else "")})
    return {"n": sel, "round": g["round"] + 1, "round_step": st["step"], "tokens": st["tokens"],
            "budget": record["budget_tokens"], "free_before": st["blocks_free_before"], "free": st["blocks_free"],
            "hits": st["prefix_hit_tokens"], "pool": st["pool"],
            "preempted": [rows[base + s]["label"] for s in st["preempted"]],
            "waiting": [rows[base + s]["label"] for s in st["waiting"]], "tables": tables}


def request_rows(data: dict) -> list[dict]:
    return [{"label": r["label"], "colour": row_colour(r["row"]), "prompt": r["prompt"],
             "prompt_tokens": r["req"]["prompt_tokens"], "cached": r["cached"],
             "completion": r["req"]["completion"], "finish_reason": r["req"]["finish_reason"],
             "preemptions": r["req"]["preemptions"], "first": r["first"], "last": r["last"]}
            for r in data["rows"]]
