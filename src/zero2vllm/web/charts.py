"""Charts drawn on the server as inline SVG: no JavaScript, nothing to download, fast to build.

Each function takes the plain data from `zero2vllm.web.views_data` and returns Markup; every piece
of text that goes into the SVG is escaped.
"""

from __future__ import annotations

from markupsafe import Markup, escape

HEAT_COLOURS = ("#ebedf0", "#c6e48b", "#7bc96f", "#239a3b", "#196127")  # none .. 3h and more
HEAT_LEVELS = (0.0, 0.5, 1.5, 3.0)  # hours at which the next colour starts
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _nice_max(value: float) -> float:
    """A round axis maximum at or above `value`."""
    if value <= 0:
        return 1.0
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        top = step * -(-value // step)
        if top / step <= 6:
            return float(top)
    return float(value)


def _ticks(top: float, n: int = 5) -> list[float]:
    step = top / n
    return [round(step * i, 6) for i in range(n + 1)]


def burnup_svg(data: dict, width: int = 640, height: int = 240) -> Markup:
    """Cumulative planned hours (dashed) and hours done (solid) per day, with today marked."""
    days, planned, done = data["days"], data["planned"], data["done"]
    if not days:
        return Markup("<p class='muted'>No plan days to draw.</p>")
    left, right, top, bottom = 44, 12, 12, 28
    w, h = width - left - right, height - top - bottom
    ymax = _nice_max(max(planned + done + [1.0]))
    n = max(len(days) - 1, 1)

    def x(i: float) -> float:
        return left + w * i / n

    def y(v: float) -> float:
        return top + h * (1 - v / ymax)

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="Burn-up: planned and done hours since the start">']
    for t in _ticks(ymax):
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y(t):.1f}" y2="{y(t):.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y(t) + 4:.1f}" class="axis" text-anchor="end">{t:g}h</text>')
    step = 7 if len(days) <= 120 else 28
    for i in range(0, len(days), step):
        parts.append(f'<text x="{x(i):.1f}" y="{height - 8}" class="axis" text-anchor="middle">'
                     f'{days[i]:%b %d}</text>')
    pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(planned))
    parts.append(f'<polyline points="{pts}" class="planned"><title>planned</title></polyline>')
    if done:
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(done))
        parts.append(f'<polyline points="{pts}" class="done"><title>done</title></polyline>')
        i = len(done) - 1
        parts.append(f'<circle cx="{x(i):.1f}" cy="{y(done[-1]):.1f}" r="3.5" class="done-dot">'
                     f'<title>{escape(days[i].isoformat())}: {done[-1]:.1f}h done, '
                     f'{planned[i]:.1f}h planned</title></circle>')
    if data["today"] in days:
        i = days.index(data["today"])
        parts.append(f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{top}" y2="{top + h}" class="today"/>'
                     f'<text x="{x(i) + 4:.1f}" y="{top + 10}" class="axis">today</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def heat_colour(hours: float) -> str:
    level = sum(hours > lv for lv in HEAT_LEVELS)
    return HEAT_COLOURS[min(level, len(HEAT_COLOURS) - 1)]


def heatmap_svg(cal: dict, cell: int = 18, gap: int = 4) -> Markup:
    """One square per day (columns are weeks, Monday on top), coloured by hours logged; days
    with a planned budget have an outline, today a dark one."""
    weeks = cal["weeks"]
    left, top = 30, 16
    width = left + len(weeks) * (cell + gap)
    height = top + 7 * (cell + gap)
    parts = [f'<svg class="heatmap" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="Hours studied per day">']
    for row, name in ((0, "Mon"), (2, "Wed"), (4, "Fri"), (6, "Sun")):
        parts.append(f'<text x="0" y="{top + row * (cell + gap) + cell - 2}" class="axis">{name}</text>')
    month = None
    for col, column in enumerate(weeks):
        cx = left + col * (cell + gap)
        first = column[0]["day"]
        if first.month != month:
            month = first.month
            parts.append(f'<text x="{cx}" y="10" class="axis">{first:%b}</text>')
        for row, d in enumerate(column):
            cy = top + row * (cell + gap)
            cls = "day hm-today" if d["today"] else ("day hm-planned" if d["planned"] else "day")
            fill = "#ffffff" if d["future"] and not d["hours"] else heat_colour(d["hours"])
            # the label is made of dates and numbers only: nothing to escape
            label = f'{WEEKDAYS[row]} {d["day"].isoformat()}: {d["hours"]:.1f}h logged'
            if d["planned"]:
                label += f', {d["planned"]:.1f}h planned'
            parts.append(f'<rect x="{cx}" y="{cy}" width="{cell}" height="{cell}" rx="2" fill="{fill}" '
                         f'class="{cls}"><title>{label}</title></rect>')
    parts.append("</svg>")
    return Markup("".join(parts))


def line_svg(series: dict, width: int = 420, height: int = 200) -> Markup:
    """A small line chart of one metric list against its x list (a lab run's evidence)."""
    xs, ys = series["xs"], series["ys"]
    left, right, top, bottom = 52, 10, 10, 30
    w, h = width - left - right, height - top - bottom
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, min(ys)), max(ys)
    xr = (x1 - x0) or 1
    yr = (y1 - y0) or 1

    def x(v: float) -> float:
        return left + w * (v - x0) / xr

    def y(v: float) -> float:
        return top + h * (1 - (v - y0) / yr)

    name, xname = escape(series["name"]), escape(series["x_name"])
    parts = [f'<svg class="chart small" viewBox="0 0 {width} {height}" role="img" aria-label="{name}">']
    for i in range(5):
        v = y0 + yr * i / 4
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
                     f'<text x="{left - 4}" y="{y(v) + 4:.1f}" class="axis" text-anchor="end">{v:.3g}</text>')
    pts = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(xs, ys))
    parts.append(f'<polyline points="{pts}" class="done"/>')
    for a, b in zip(xs, ys):
        parts.append(f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="2.5" class="done-dot">'
                     f'<title>{xname} {a:g}: {b:.4g}</title></circle>')
    parts.append(f'<text x="{left}" y="{height - 6}" class="axis">{xname} {x0:g} .. {x1:g}</text>'
                 f'<text x="{left + w}" y="{height - 6}" class="axis" text-anchor="end">{name}</text></svg>')
    return Markup("".join(parts))
