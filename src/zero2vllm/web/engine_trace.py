"""The dashboard's Engine trace page: `z2v engine trace` drawn as a picture, to SEE paged attention
and continuous batching.

GET  /engine/trace          the newest saved trace (zero2vllm.engine.traces), the list of saved ones
GET  /engine/trace/NAME     an older one; ?step=N picks the step whose block tables are shown
POST /engine/trace          run a new trace from the form (the CLI's own `run_trace`), save, redirect

The picture is server-rendered SVG built here in plain Python (no JavaScript; every <title> is a
hover tooltip). Four parts, all read from the saved record:
  - a timeline: one row per sequence, one column per step, coloured by what the sequence did,
    with the tokens computed per step (against the token budget) above;
  - the block pool over time: one row per step, one column per physical block, coloured by the
    sequence holding it (striped: shared; dotted: free but still prefix-cached);
  - for the selected step, each sequence's block table (logical -> physical, slots filled) and
    the text sampled so far;
  - a summary per request.
Runs of cells that do not change (a block held by the same sequence for 40 steps, a sequence
waiting for 10 steps) are one rectangle, and at most MAX_DRAWN_STEPS steps are drawn at once, so
a 36-sequence, 100-block, 300-step trace stays a page of a few hundred kilobytes.

Only the POST handler imports torch (through zero2vllm.engine); showing traces never does.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from flask import Flask, redirect, render_template, request, url_for
from markupsafe import Markup, escape

from zero2vllm.engine import traces

ENV_MODEL = "ZERO2VLLM_TRACE_MODEL"  # the model the form runs (default: the bundled smollm2)
MAX_DRAWN_STEPS = 300
MAX_PROMPTS = 36
MAX_PROMPT_CHARS = 2000
FORM_FIELDS = {  # name: (label, lowest, highest)
    "max_tokens": ("Max tokens", 1, 512),
    "block_size": ("Block size", 1, 256),
    "num_kv_blocks": ("Pool blocks", 1, 1024),
    "max_num_batched_tokens": ("Token budget", 1, 8192),
    "max_num_seqs": ("Max sequences", 1, 64),
    "repeat": ("Repeat", 1, 4),
}
EXAMPLE_PROMPTS = ["The capital of France is", "Once upon a time, in a small village by the sea,"]

# What a sequence did in a step: colour and the legend's words.
STATES = {
    "prefill": ("#0969da", "prefill (the whole rest of the prompt)"),
    "prefill chunk": ("#80ccff", "prefill chunk (budget ran out mid-prompt)"),
    "decode": ("#1a7f37", "decode (one new token)"),
    "recompute": ("#bf8700", "recompute after preemption"),
    "recompute chunk": ("#f2cc60", "recompute chunk"),
    "preempted": ("#cf222e", "preempted (blocks freed)"),
    "waiting": ("#d0d7de", "waiting in the queue"),
    "stalled": ("#c297ff", "running, but no budget left this step"),
    "finished": ("#f0f2f4", "finished"),
}
FREE_COLOUR, SHARED_COLOUR, CACHED_COLOUR = "#ffffff", "#ffd33d", "#dbe7ff"
_NAMES = "0123456789abcdefghijklmnopqrstuvwxyz"  # the pool map's characters (engine/trace.py)

_run_lock = threading.Lock()  # one trace at a time: each loads a model


class FormError(ValueError):
    """A bad field in the Run form; the message names it and says what is allowed."""


# -- routes ---------------------------------------------------------------------------------------

def register(app: Flask) -> None:
    app.config.setdefault("Z2V_TRACE_MODEL", os.environ.get(ENV_MODEL) or "smollm2")

    def root() -> Path:
        return app.config["Z2V_DATA_ROOT"]

    @app.get("/engine/trace")
    @app.get("/engine/trace/<name>")
    def engine_trace(name: str | None = None):
        return trace_page(root(), name, request.args.get("step", type=int))

    @app.post("/engine/trace")
    def engine_trace_run():
        form = request.form
        try:
            settings = parse_form(form)
        except FormError as exc:
            return trace_page(root(), None, None, form_error=str(exc), form=form, status=422)
        if not _run_lock.acquire(blocking=False):
            return trace_page(root(), None, None, form=form, status=429,
                              form_error="another trace is running; try again when it has finished")
        try:
            try:
                from zero2vllm.engine.trace import run_trace
                from zero2vllm.models import ModelError
            except ImportError as exc:
                return trace_page(root(), None, None, form=form, status=500,
                                  form_error=f"running a trace needs the ml extra ({exc.name} is missing): "
                                             "pip install 'zero2vllm[ml]'")
            settings["model"] = app.config["Z2V_TRACE_MODEL"]
            try:
                _, path = run_trace(settings, source="dashboard", root=root())
            except (ModelError, ValueError, FileNotFoundError, RuntimeError) as exc:
                return trace_page(root(), None, None, form_error=str(exc), form=form, status=422)
            except OSError as exc:
                return trace_page(root(), None, None, form=form, status=500,
                                  form_error=f"the trace ran but could not be saved: {exc}")
        finally:
            _run_lock.release()
        return redirect(url_for("engine_trace", name=path.stem), code=303)


def parse_form(form) -> dict:
    """The Run form's fields as run_trace settings; FormError (one line) for the first bad one."""
    prompts = [line.strip() for line in (form.get("prompts") or "").splitlines() if line.strip()]
    if not prompts:
        raise FormError("Prompts: give at least one prompt, one per line")
    if len(prompts) > MAX_PROMPTS:
        raise FormError(f"Prompts: {len(prompts)} lines; the picture stays readable up to {MAX_PROMPTS}")
    long = next((i for i, p in enumerate(prompts, 1) if len(p) > MAX_PROMPT_CHARS), None)
    if long:
        raise FormError(f"Prompts: line {long} is over {MAX_PROMPT_CHARS} characters; shorten it")
    settings: dict = {"prompts": prompts}
    for key, (label, lo, hi) in FORM_FIELDS.items():
        raw = (form.get(key) or "").strip()
        if not raw:
            settings[key] = traces.DEFAULTS[key]
            continue
        try:
            value = int(raw)
        except ValueError:
            raise FormError(f"{label}: {raw[:20]!r} is not a whole number; use {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise FormError(f"{label}: {value} is out of range; use {lo} to {hi}")
        settings[key] = value
    settings["prefix_caching"] = form.get("prefix_caching") in ("on", "1", "true", "yes")
    return settings


def trace_page(root: Path, name: str | None, step: int | None, *, form_error: str | None = None,
               form=None, status: int = 200):
    saved = traces.list_saved(root)
    record, load_error, view = None, None, None
    if name is None and saved:
        name = saved[0]["name"]
    if name is not None:
        try:
            record = traces.load(name, root)
            view = build_view(record, step, url_for("engine_trace", name=name))
        except traces.TraceFileError as exc:
            load_error, status = str(exc), (404 if status == 200 else status)
        except (KeyError, TypeError, ValueError, IndexError) as exc:  # a file edited by hand
            load_error = f"{name}: this file is not a trace the page can draw ({type(exc).__name__}: {exc})"
            record = None
    values = form_values(form, record)
    return render_template("engine_trace.html", saved=saved, name=name, record=record, view=view,
                           load_error=load_error, form_error=form_error, values=values,
                           fields=FORM_FIELDS, example=traces.EXAMPLE_COMMAND, keep=traces.KEEP), status


def form_values(form, record: dict | None) -> dict:
    """What the form shows: what was just sent (after an error), else the shown trace's settings."""
    if form is not None:
        values = {k: form.get(k, "") for k in FORM_FIELDS}
        values["prompts"] = form.get("prompts", "")
        values["prefix_caching"] = form.get("prefix_caching") in ("on", "1", "true", "yes")
        return values
    s = (record or {}).get("settings") or {}
    values = {k: s.get(k, traces.DEFAULTS[k]) for k in FORM_FIELDS}
    values["prompts"] = "\n".join(s.get("prompts") or EXAMPLE_PROMPTS)
    values["prefix_caching"] = s.get("prefix_caching", True)
    return values


# -- from the record to what is drawn -------------------------------------------------------------

def _fmt_blocks(table: list[int]) -> str:
    if len(table) <= 10:
        return "[" + ", ".join(map(str, table)) + "]"
    return f"[{', '.join(map(str, table[:4]))}, ..., {', '.join(map(str, table[-3:]))}] ({len(table)} blocks)"


def _pos(a: int, b: int) -> str:
    return f"pos {a}" if b - a == 1 else f"pos {a}-{b - 1}"


def row_colour(row: int) -> str:
    """A distinct colour per sequence (golden-angle hues), the same in the timeline and the pool."""
    return f"hsl({(row * 137.508) % 360:.0f},62%,{52 + 10 * (row // 12 % 2)}%)"


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


def _tick_every(cell: float, min_px: float = 28) -> int:
    for k in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000):
        if k * cell >= min_px:
            return k
    return 1000


def timeline_svg(record: dict, data: dict, window: tuple[int, int], sel: int, link) -> Markup:
    """Budget bars above, one row per sequence below, one column per step; legend underneath."""
    rows, steps = data["rows"], data["steps"]
    lo, hi = window
    n = hi - lo + 1
    cw = max(3, min(24, 900 // n))
    rh = max(10, min(18, 360 // max(len(rows), 1)))
    left, top, bars_h, axis_h = 92, 14, 46, 16
    grid_top = top + bars_h + axis_h
    width = max(left + n * cw + 12, 760)  # at least as wide as the legend
    legend_y = grid_top + len(rows) * rh + 14
    height = legend_y + 18 * -(-(len(STATES) + 2) // 3) + 4
    budget = record["budget_tokens"]
    scale = max([budget] + [steps[i - 1]["s"]["tokens"] + steps[i - 1]["s"]["prefix_hit_tokens"]
                            for i in range(lo, hi + 1)])
    x = lambda i: left + (i - lo) * cw  # noqa: E731
    out = [f'<svg class="trace-svg" id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="Timeline: what each sequence did in each step" data-steps="{n}" data-rows="{len(rows)}">',
           f'<text x="0" y="{top + 10}" class="lbl">tokens</text>'
           f'<text x="0" y="{top + 22}" class="lbl">per step</text>']
    by = lambda v: top + bars_h - bars_h * v / scale  # noqa: E731
    out.append(f'<line x1="{left}" x2="{left + n * cw}" y1="{by(budget):.1f}" y2="{by(budget):.1f}" '
               f'class="budget"><title>token budget: {budget} per step</title></line>')
    for i in range(lo, hi + 1):
        st = steps[i - 1]["s"]
        t, hits = st["tokens"], st["prefix_hit_tokens"]
        title = (f"step {i}: {t} tokens computed of a {budget}-token budget"
                 + (f"; {hits} more from the prefix cache" if hits else "")
                 + f"; free blocks {st['blocks_free_before']} -> {st['blocks_free']}")
        bar = f'<rect x="{x(i)}" y="{by(t):.1f}" width="{max(cw - 1, 1)}" height="{bars_h * t / scale:.1f}" class="bar"/>'
        if hits:
            bar += (f'<rect x="{x(i)}" y="{by(t + hits):.1f}" width="{max(cw - 1, 1)}" '
                    f'height="{bars_h * hits / scale:.1f}" class="hitbar"/>')
        out.append(f'<a href="{escape(link(i))}" class="step-link"><title>{escape(title)}</title>{bar}'
                   f'<rect x="{x(i)}" y="{top}" width="{cw}" height="{bars_h}" fill="transparent"/></a>')
    every = _tick_every(cw)
    for i in range(lo, hi + 1):
        if i == lo or i % every == 0:
            out.append(f'<text x="{x(i) + cw / 2:.1f}" y="{top + bars_h + 12}" class="tick" '
                       f'text-anchor="middle">{i}</text>')
    for i in range(lo + 1, hi + 1):  # where a new round (--repeat) starts
        if steps[i - 1]["round"] != steps[i - 2]["round"]:
            r = steps[i - 1]["round"] + 1
            out.append(f'<line x1="{x(i)}" x2="{x(i)}" y1="{top}" y2="{grid_top + len(rows) * rh}" class="round">'
                       f'<title>round {r} starts at step {i}</title></line>')
    for row in rows:
        y = grid_top + row["row"] * rh
        out.append(f'<rect x="{left - 12}" y="{y + 1}" width="8" height="{rh - 2}" fill="{row_colour(row["row"])}"/>'
                   f'<text x="{left - 16}" y="{y + rh - 3}" class="lbl" text-anchor="end">{escape(row["label"])}</text>')
        out.extend(_row_cells(row, data, lo, hi, x, y, cw, rh))
    if lo <= sel <= hi:
        out.append(f'<rect x="{x(sel)}" y="{top - 2}" width="{cw}" height="{grid_top + len(rows) * rh - top + 4}" '
                   f'class="sel"><title>step {sel} (selected)</title></rect>')
    for k, (state, (colour, words)) in enumerate(STATES.items()):
        lx, ly = 4 + (k % 3) * 250, legend_y + 18 * (k // 3)
        out.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colour}" class="key"/>'
                   f'<text x="{lx + 17}" y="{ly + 10}" class="lbl">{escape(words)}</text>')
    k = len(STATES)
    lx, ly = 4 + (k % 3) * 250, legend_y + 18 * (k // 3)
    out.append(f'<circle cx="{lx + 6}" cy="{ly + 6}" r="3" class="hit legend"/><text x="{lx + 17}" y="{ly + 10}" '
               f'class="lbl">started from the prefix cache</text>')
    k += 1
    lx, ly = 4 + (k % 3) * 250, legend_y + 18 * (k // 3)
    out.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" class="hitbar legend"/><text x="{lx + 17}" '
               f'y="{ly + 10}" class="lbl">bar: tokens served by the prefix cache</text>')
    out.append("</svg>")
    return Markup("".join(out))


def _row_cells(row: dict, data: dict, lo: int, hi: int, x, y: int, cw: int, rh: int) -> list[str]:
    """One rect per work step; runs of waiting / stalled / finished merged into one rect each."""
    out, label, r = [], row["label"], row["row"]
    i = lo
    while i <= hi:
        cell = data["cells"][i - 1].get(r)
        if cell is None:  # its round has not started
            i += 1
            continue
        state, w = cell
        if w is not None:
            a, b = w["positions"]
            title = (f"step {i}, {label}: {w['kind']} {_pos(a, b)}"
                     + (f" ({w['cached_tokens']} from the prefix cache)" if w["cached_tokens"] else "")
                     + f", blocks {_fmt_blocks(w['block_table'])}"
                     + (f" -> {w['sampled']!r}" if w["sampled"] is not None else "")
                     + (f" [finished: {w['finished']}]" if w["finished"] else ""))
            out.append(f'<rect x="{x(i)}" y="{y + 1}" width="{max(cw - 1, 1)}" height="{rh - 2}" '
                       f'fill="{STATES[state][0]}" class="cell" data-step="{i}" data-state="{state}">'
                       f'<title>{escape(title)}</title></rect>')
            if w["cached_tokens"]:
                out.append(f'<circle cx="{x(i) + cw / 2:.1f}" cy="{y + rh / 2:.1f}" r="{max(1.5, min(cw, rh) / 4):.1f}" '
                           f'class="hit"><title>step {i}, {label}: {w["cached_tokens"]} prompt tokens taken from '
                           f'the prefix cache</title></circle>')
            if w["finished"]:
                out.append(f'<rect x="{x(i) + cw - 3}" y="{y + 1}" width="2" height="{rh - 2}" class="end"/>')
            i += 1
            continue
        j = i
        while j + 1 <= hi and data["cells"][j].get(r) == cell:
            j += 1
        span = f"step {i}" if i == j else f"steps {i}-{j}"
        words = {"preempted": "preempted: its blocks were freed; it will be recomputed",
                 "waiting": "waiting in the queue (no room in the batch or the pool yet)",
                 "stalled": "running, but the step's token budget was used up before its turn",
                 "finished": f"finished ({row['req']['finish_reason']})"}[state]
        out.append(f'<rect x="{x(i)}" y="{y + 1}" width="{(j - i + 1) * cw - 1}" height="{rh - 2}" '
                   f'fill="{STATES[state][0]}" class="cell" data-step="{i}" data-state="{state}">'
                   f'<title>{escape(f"{span}, {label}: {words}")}</title></rect>')
        i = j + 1
    return out


def pool_svg(record: dict, data: dict, window: tuple[int, int], sel: int, link) -> Markup:
    """One row per step, one column per physical block; a block held by the same owner over
    consecutive steps is one rectangle (so the page stays small)."""
    rows, holders = data["rows"], data["holders"]
    nblocks = record["num_blocks"]
    lo, hi = window
    n = hi - lo + 1
    bw = max(3, min(24, 900 // max(nblocks, 1)))
    sh = max(2, min(14, 420 // n))
    left, top = 44, 26
    width = max(left + nblocks * bw + 12, 760)  # at least as wide as the legend
    legend_y = top + n * sh + 12
    height = legend_y + 22
    label = {r["row"]: r["label"] for r in rows}
    y = lambda i: top + (i - lo) * sh  # noqa: E731
    out = [f'<svg class="trace-svg" id="pool" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="The KV block pool, step by step" '
           f'data-blocks="{nblocks}" data-steps="{n}">',
           '<defs><pattern id="pat-shared" width="6" height="6" patternUnits="userSpaceOnUse" '
           f'patternTransform="rotate(45)"><rect width="6" height="6" fill="{SHARED_COLOUR}"/>'
           '<rect width="2.5" height="6" fill="#24292f"/></pattern>'
           '<pattern id="pat-cached" width="5" height="5" patternUnits="userSpaceOnUse">'
           f'<rect width="5" height="5" fill="{CACHED_COLOUR}"/><circle cx="2.5" cy="2.5" r="1" fill="#54aeff"/>'
           '</pattern></defs>',
           f'<text x="{left}" y="10" class="lbl">physical block</text>',
           f'<rect x="{left}" y="{top}" width="{nblocks * bw}" height="{n * sh}" class="pool-bg"/>']
    every = _tick_every(bw, 22)
    for b in range(0, nblocks, every):
        out.append(f'<text x="{left + b * bw + bw / 2:.1f}" y="{top - 4}" class="tick" text-anchor="middle">{b}</text>')
    every = _tick_every(sh, 14)
    for i in range(lo, hi + 1):
        if i == lo or i % every == 0:
            out.append(f'<a href="{escape(link(i))}"><text x="{left - 4}" y="{y(i) + min(sh, 10)}" class="tick" '
                       f'text-anchor="end">{i}</text></a>')
    for b in range(nblocks):
        i = lo
        while i <= hi:
            key = holders[i - 1][b] if b < len(holders[i - 1]) else ("free",)
            j = i
            while j + 1 <= hi and (holders[j][b] if b < len(holders[j]) else ("free",)) == key:
                j += 1
            if key != ("free",):
                span = f"step {i}" if i == j else f"steps {i}-{j}"
                if key[0] == "seq":
                    fill, what = row_colour(key[1]), f"held by {label.get(key[1], '?')}"
                elif key[0] == "shared":
                    names = ", ".join(label.get(r, "?") for r in key[1])
                    fill, what = "url(#pat-shared)", f"shared by {names or 'several sequences'} (prefix cache)"
                else:
                    fill, what = "url(#pat-cached)", "free but still prefix-cached: a request with the same prefix reuses it"
                out.append(f'<rect x="{left + b * bw}" y="{y(i)}" width="{bw - (1 if bw > 3 else 0)}" '
                           f'height="{(j - i + 1) * sh}" fill="{fill}" class="blk" data-block="{b}">'
                           f'<title>{escape(f"block {b}, {span}: {what}")}</title></rect>')
            i = j + 1
    if lo <= sel <= hi:
        out.append(f'<rect x="{left - 2}" y="{y(sel)}" width="{nblocks * bw + 4}" height="{sh}" class="sel">'
                   f'<title>step {sel} (selected)</title></rect>')
    keys = [("#fff", "free", "pool-free"), ("url(#pat-cached)", "free, still prefix-cached", ""),
            ("url(#pat-shared)", "shared by several sequences", ""),
            ("hsl(0,62%,52%)", "held by one sequence (its timeline colour)", "")]
    lx = 4
    for fill, words, cls in keys:
        out.append(f'<rect x="{lx}" y="{legend_y}" width="12" height="12" fill="{fill}" class="key {cls}"/>'
                   f'<text x="{lx + 17}" y="{legend_y + 10}" class="lbl">{words}</text>')
        lx += 17 + round(5.6 * len(words)) + 16
    out.append("</svg>")
    return Markup("".join(out))


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


def block_table_svg(row: dict, table: list[int], computed: int, bs: int, cached_blocks: int,
                    owners: dict[int, list[int]], rows: list[dict], freed: bool = False) -> Markup:
    """Logical block i (above) -> physical block id (in the box), the box filled as far as its
    slots hold tokens; blue outline: taken from the prefix cache; striped: shared."""
    if not table:
        return Markup("")
    w = max(26, min(42, 520 // len(table) - 4))
    per_line = max(1, 520 // (w + 4))  # a long table wraps onto more lines
    h, top, line_h = 26, 12, 42
    lines = -(-len(table) // per_line)
    width, height = min(len(table), per_line) * (w + 4) + 4, (lines - 1) * line_h + top + h + 4
    label = row["label"]
    out = [f'<svg class="btable{" freed" if freed else ""}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" data-seq="{escape(label)}" '
           f'data-blocks="{" ".join(map(str, table))}">']
    colour = row_colour(row["row"])
    for i, b in enumerate(table):
        fill = max(0, min(bs, computed - i * bs))
        x, y0 = 2 + (i % per_line) * (w + 4), (i // per_line) * line_h
        shared = [r for r in owners.get(b, []) if r != row["row"]]
        notes = []
        if i < cached_blocks:
            notes.append("taken from the prefix cache")
        if shared:
            notes.append("shared with " + ", ".join(rows[r]["label"] for r in shared))
        title = (f"{label}: logical block {i} (positions {i * bs}-{(i + 1) * bs - 1}) -> physical block {b}, "
                 f"{fill} of {bs} slots hold tokens" + ("; " + "; ".join(notes) if notes else ""))
        cls = "bt" + (" bt-cached" if i < cached_blocks else "") + (" bt-shared" if shared else "")
        out.append(f'<g><title>{escape(title)}</title>'
                   f'<text x="{x + w / 2:.1f}" y="{y0 + 9}" class="tick" text-anchor="middle">{i}</text>'
                   f'<rect x="{x}" y="{y0 + top}" width="{w}" height="{h}" class="{cls}"/>'
                   f'<rect x="{x}" y="{y0 + top + h * (1 - fill / bs):.1f}" width="{w}" height="{h * fill / bs:.1f}" '
                   f'fill="{colour}" opacity="0.55"/>'
                   f'<text x="{x + w / 2:.1f}" y="{y0 + top + h / 2 + 4:.1f}" class="bid" text-anchor="middle">{b}</text>'
                   f'</g>')
    out.append("</svg>")
    return Markup("".join(out))


def request_rows(data: dict) -> list[dict]:
    return [{"label": r["label"], "colour": row_colour(r["row"]), "prompt": r["prompt"],
             "prompt_tokens": r["req"]["prompt_tokens"], "cached": r["cached"],
             "completion": r["req"]["completion"], "finish_reason": r["req"]["finish_reason"],
             "preemptions": r["req"]["preemptions"], "first": r["first"], "last": r["last"]}
            for r in data["rows"]]
