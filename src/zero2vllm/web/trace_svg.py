"""The Engine trace page's pictures as server-rendered SVG: the timeline, the block pool over\ntime and one sequence's block table (every <title> is a hover tooltip)."""

from __future__ import annotations

from markupsafe import Markup, escape


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


def _fmt_blocks(table: list[int]) -> str:
    if len(table) <= 10:
        return "[" + ", ".join(map(str, table)) + "]"
    return f"[{', '.join(map(str, table[:4]))}, ..., {', '.join(map(str, table[-3:]))}] ({len(table)} blocks)"


def _pos(a: int, b: int) -> str:
    return f"pos {a}" if b - a == 1 else f"pos {a}-{b - 1}"


def row_colour(row: int) -> str:
    """A distinct colour per sequence (golden-angle hues), the same in the timeline and the pool."""
    return f"hsl({(row * 137.508) % 360:.0f},62%,{52 + 10 * (row // 12 % 2)}%)"


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
