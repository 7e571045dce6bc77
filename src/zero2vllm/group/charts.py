"""The group dashboard's charts, drawn on the server as inline SVG like the local dashboard's
(web/charts.py): no JavaScript, nothing to download; every name that goes in is escaped.
"""

from __future__ import annotations

from markupsafe import Markup, escape

# share of the week's budget logged: none, under half, under the budget, met it
LEVEL_COLOURS = ("#eaeef2", "#ffcecb", "#fae17d", "#4ac26b")
FUTURE_COLOUR = "#ffffff"


def _level(hours: float, budget: float | None) -> int:
    if hours <= 0:
        return 0
    if not budget:
        return 3
    return 1 if hours < budget / 2 else (2 if hours < budget else 3)


def _budget_text(lo, hi) -> str:
    if not lo:
        return "no budget"
    return f"{lo:g}h" if not hi or hi == lo else f"{lo:g}-{hi:g}h"


def cohort_svg(rows: list[dict], cell: int = 30, gap: int = 3, name_w: int = 150,
               fragments: dict | None = None) -> Markup:
    """One row per learner, one square per plan week, coloured by the share of that week's
    budget they logged; the hours are written in the square, the current week is outlined.
    FRAGMENTS (a dict the caller keeps) caches each row's drawing under the row's `key`."""
    n_weeks = max((len(r["weeks"]) for r in rows), default=0)
    if not rows or not n_weeks:
        return Markup("<p class='muted'>No learner has synced a plan yet.</p>")
    top = 18
    width = name_w + n_weeks * (cell + gap)
    height = top + len(rows) * (cell + gap)
    parts = [f'<svg class="cohort" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="Hours per plan week of each learner against the week\'s budget">']
    for i in range(n_weeks):
        parts.append(f'<text x="{name_w + i * (cell + gap) + cell / 2:.1f}" y="12" class="axis" '
                     f'text-anchor="middle">W{i + 1}</text>')
    for j, r in enumerate(rows):
        key = ("svg-row", r.get("key"), name_w, cell, gap)
        inner = fragments.get(key) if fragments is not None and r.get("key") else None
        if inner is None:
            inner = _cohort_row(r, cell, gap, name_w)
            if fragments is not None and r.get("key"):
                fragments[key] = inner
        parts.append(f'<g transform="translate(0 {top + j * (cell + gap)})">{inner}</g>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _cohort_row(r: dict, cell: int, gap: int, name_w: int) -> str:
    name = escape(r["name"])
    parts = [f'<text x="{name_w - 8}" y="{cell / 2 + 4:.1f}" class="axis" '
             f'text-anchor="end">{escape(r["name"][:22])}</text>']
    for i, w in enumerate(r["weeks"]):
        x = name_w + i * (cell + gap)
        fill = FUTURE_COLOUR if w["future"] else LEVEL_COLOURS[_level(w["hours"], w["budget_min"])]
        cls = "wk now" if r.get("current") == i + 1 else "wk"
        label = (f'{name}, week {w["number"]} ({w["start"]:%b %d}): {w["hours"]:.1f}h logged of '
                 f'{_budget_text(w["budget_min"], w["budget_max"])}')
        parts.append(f'<rect x="{x}" y="0" width="{cell}" height="{cell}" rx="3" fill="{fill}" '
                     f'class="{cls}"><title>{label}</title></rect>')
        if w["hours"] > 0:
            parts.append(f'<text x="{x + cell / 2:.1f}" y="{cell / 2 + 4:.1f}" class="cellnum" '
                         f'text-anchor="middle">{w["hours"]:.0f}</text>')
    return "".join(parts)


def weeks_svg(weeks: list[dict], width: int = 640, height: int = 220) -> Markup:
    """One learner: a bar of hours per plan week, the week's budget as a band behind it."""
    if not weeks:
        return Markup("<p class='muted'>No plan synced yet.</p>")
    left, right, top, bottom = 40, 10, 10, 26
    w, h = width - left - right, height - top - bottom
    ymax = max([x["hours"] for x in weeks] + [x["budget_max"] or x["budget_min"] or 0 for x in weeks] + [1.0])
    ymax = float(-(-ymax // 5) * 5)
    slot = w / len(weeks)

    def y(v: float) -> float:
        return top + h * (1 - v / ymax)

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="Hours per plan week against the week\'s budget">']
    for i in range(6):
        v = ymax * i / 5
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y(v) + 4:.1f}" class="axis" text-anchor="end">{v:g}h</text>')
    for i, wk in enumerate(weeks):
        x = left + i * slot
        lo, hi = wk["budget_min"] or 0, wk["budget_max"] or wk["budget_min"] or 0
        if hi:
            parts.append(f'<rect x="{x + slot * 0.1:.1f}" y="{y(hi):.1f}" width="{slot * 0.8:.1f}" '
                         f'height="{max(y(lo) - y(hi), 2):.1f}" class="budget"/>')
        bar = y(wk["hours"])
        cls = "bar met" if wk["met"] else "bar"
        parts.append(f'<rect x="{x + slot * 0.3:.1f}" y="{bar:.1f}" width="{slot * 0.4:.1f}" '
                     f'height="{top + h - bar:.1f}" class="{cls}"><title>week {wk["number"]}: '
                     f'{wk["hours"]:.1f}h of {_budget_text(wk["budget_min"], wk["budget_max"])}</title></rect>'
                     f'<text x="{x + slot / 2:.1f}" y="{height - 8}" class="axis" text-anchor="middle">'
                     f'W{wk["number"]}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
