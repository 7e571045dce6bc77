"""The weekly report: hours against the commitment, items done and open, lab results with their
numbers, concepts due and their retention, and charts, as Markdown, HTML or one PNG.

`build()` gathers the numbers (plain data, also what `--format json` would be); `render()` turns
them into a self-contained file: charts are PNGs drawn with matplotlib's Agg canvas and embedded
as base64 data URIs, so a report can be mailed or committed alone.

Definitions:
- Hours this week: time entries whose day falls in the week's seven days, on any item.
- Commitment: the plan's "Time commitment" per week; budget: the sum of the week's day blocks.
- Planned per day: each block's lower budget spread over its days (as `z2v status`).
- Lab results: runs of the week's labs, runs that name the week (summary checks), and any run
  made during the week's days.
- Retention: FSRS retrievability, the predicted chance of recalling a card now.
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import datetime, timedelta

from zero2vllm.tracker import progress
from zero2vllm.tracker.plan import Plan
from zero2vllm.tracker.store import Store

FORMATS = ("md", "html", "png")


class ReportError(ValueError):
    pass


# -- the numbers -------------------------------------------------------------------------------------
def _week_labs(week_number: int) -> set[str]:
    try:
        from zero2vllm.labs import all_labs

        return {lab.id for lab in all_labs().values() if lab.week == week_number}
    except Exception:  # a broken lab package must not stop a report
        return set()


def _local_day(at: str):
    return progress.local_day(datetime.fromisoformat(at))


def build(store: Store, plan: Plan, week_number: int, now: datetime) -> dict:
    from zero2vllm.tracker import review

    week = plan.week(week_number)
    if week is None:
        have = ", ".join(str(w.number) for w in plan.weeks)
        raise ReportError(f"there is no week {week_number}; the plan has weeks {have}")
    index = plan.weeks.index(week) + 1
    start = progress.start_date(store)
    first, last = progress.week_dates(start, index)
    today = progress.local_day(now)

    prog = progress.progress(store, plan)
    notes = store.notes()
    by_day = store.seconds_by_day(first.isoformat(), last.isoformat())
    planned = progress.planned_hours_by_day(plan, start)
    days = [first + timedelta(days=i) for i in range(7)]
    in_week = store.seconds_by_item_between(first.isoformat(), last.isoformat())
    c = plan.commitment

    items = []
    for item in week.items:
        p = prog[item.id]
        items.append({"id": item.id, "kind": item.kind, "label": item.label, "title": item.title,
                      "status": p.status, "hours": round(p.seconds / 3600, 2), "note": item.id in notes,
                      "draft": item.draft})

    labs = _week_labs(week.number)
    runs = []
    for r in store.lab_runs():
        day = _local_day(r["at"])
        metrics = r["metrics"] if isinstance(r["metrics"], dict) else {}
        if r["lab"] in labs or metrics.get("week") == week.number or first <= day <= last:
            if metrics.get("week") not in (None, week.number):
                continue  # a summary of another week, checked during this one
            runs.append({
                "lab": r["lab"], "kind": r["kind"], "at": r["at"], "passed": r["passed"],
                "criteria_passed": sum(1 for x in r["criteria"] if x.get("passed")),
                "criteria": len(r["criteria"]), "duration_s": r["duration_s"], "metrics": metrics,
                "failed": [x["name"] for x in r["criteria"] if not x.get("passed")],
            })

    cards = review.all_cards(store, plan, now, week=week.number)
    everything = review.all_cards(store, plan, now)
    st = review.stats(store, plan, now)
    week_reviews = [r for r in store.reviews() if first <= _local_day(r["at"]) <= last]
    reviewed = [x for x in cards if x.retrievability is not None]
    return {
        "generated_at": now.isoformat(timespec="seconds"),
        "today": today.isoformat(),
        "plan": plan.title,
        "week": {"number": week.number, "title": week.title, "goal": week.goal, "draft": week.draft,
                 "start": first.isoformat(), "end": last.isoformat(),
                 "when": "future" if today < first else "past" if today > last else "current"},
        "hours": {
            "logged": round(sum(by_day.values()) / 3600, 2),
            "on_week_items": round(sum(prog[i.id].seconds for i in week.items) / 3600, 2),
            "commitment_min": c.weekly_min if c else None, "commitment_max": c.weekly_max if c else None,
            "budget_min": week.hours_min, "budget_max": week.hours_max,
            "by_day": [{"day": d.isoformat(), "logged": round(by_day.get(d.isoformat(), 0) / 3600, 2),
                        "planned": round(planned.get(d, 0.0), 2)} for d in days],
            "by_item": sorted(({"item": k, "hours": round(v / 3600, 2)} for k, v in in_week.items()),
                              key=lambda x: -x["hours"]),
        },
        "items": items,
        "items_done": sum(i["status"] == "done" for i in items),
        "items_skipped": sum(i["status"] == "skipped" for i in items),
        "items_open": sum(i["status"] in ("todo", "in_progress") for i in items),
        "labs": runs,
        "cards": [x.to_dict() for x in cards],
        "retention": {
            "week_mean": sum(x.retrievability for x in reviewed) / len(reviewed) if reviewed else None,
            "week_reviewed": len(reviewed),
            "all_mean": st["mean_retrievability"], "all_reviewed": st["reviewed_cards"],
            "target": review.DESIRED_RETENTION,
        },
        "review": {
            "due_now": st["due"], "held": st["held"], "next_due": st["next_due"],
            "due_within_week": st["due_within_week"],
            "reviews_in_week": len(week_reviews),
            "ratings_in_week": {name: sum(r["rating"] == k for r in week_reviews)
                                for k, name in review.RATINGS.items()},
            "forecast": [{"day": d.isoformat(), "cards": n} for d, n in review.forecast(everything, now)],
        },
    }


# -- charts -----------------------------------------------------------------------------------------
def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _hours_axes(ax, data: dict) -> None:
    h = data["hours"]
    days = h["by_day"]
    labels = [datetime.fromisoformat(d["day"]).strftime("%a %d") for d in days]
    x = range(len(days))
    ax.bar([i - 0.2 for i in x], [d["logged"] for d in days], width=0.4, label="logged", color="#3b7dd8")
    ax.bar([i + 0.2 for i in x], [d["planned"] for d in days], width=0.4, label="planned (block budget)",
           color="#c9c9c9")
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("hours")
    commit = _range(h["commitment_min"], h["commitment_max"])
    ax.set_title(f"Hours per day: {h['logged']:.1f} h logged, commitment {commit} per week", fontsize=10)
    ax.legend(fontsize=8)


def _retention_axes(ax, data: dict) -> None:
    cards = [c for c in data["cards"] if c["retrievability"] is not None]
    target = data["retention"]["target"]
    if not cards:
        ax.text(0.5, 0.5, "no reviews of this week's cards yet", ha="center", va="center")
        ax.set_axis_off()
        ax.set_title("Retention of this week's concepts", fontsize=10)
        return
    names = [_short(c["question"], 38) for c in cards]
    values = [c["retrievability"] for c in cards]
    colors = ["#2e9e5b" if v >= target else "#d8823b" for v in values]
    ax.barh(range(len(cards)), values, color=colors)
    ax.set_yticks(range(len(cards)), names, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(target, color="black", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"retrievability now (dashed: target {target:.0%})")
    ax.set_title("Retention of this week's concepts (FSRS)", fontsize=10)


def _forecast_axes(ax, data: dict) -> None:
    fc = data["review"]["forecast"]
    ax.bar(range(len(fc)), [d["cards"] for d in fc], color="#7a5cc4")
    ax.set_xticks(range(len(fc)), [datetime.fromisoformat(d["day"]).strftime("%d") for d in fc], fontsize=8)
    ax.set_ylabel("cards")
    ax.set_title(f"Reviews due, next {len(fc)} days (from {fc[0]['day']})", fontsize=10)
    ax.yaxis.get_major_locator().set_params(integer=True)


def charts(data: dict) -> dict[str, bytes]:
    """Each chart as PNG bytes: hours, retention, forecast."""
    from matplotlib.figure import Figure  # the Agg canvas, no pyplot, no display needed

    out = {}
    n_cards = max(1, sum(c["retrievability"] is not None for c in data["cards"]))
    for name, draw, size in (("hours", _hours_axes, (7, 3)),
                             ("retention", _retention_axes, (7, 1.2 + 0.35 * n_cards)),
                             ("forecast", _forecast_axes, (7, 2.4))):
        fig = Figure(figsize=size)
        draw(fig.add_subplot(), data)
        out[name] = _png(fig)
    return out


# -- documents ----------------------------------------------------------------------------------------
def _range(lo, hi) -> str:
    if lo is None:
        return "?"
    return f"{lo:g} h" if hi in (None, lo) else f"{lo:g}-{hi:g} h"


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        shown = ", ".join(_fmt(x) for x in v[:6])
        return f"[{shown}{', …' if len(v) > 6 else ''}]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in list(v.items())[:6]) + "}"
    return str(v)


def _blocks(data: dict, images: dict[str, bytes]) -> list[tuple]:
    """The report as a list of blocks, rendered by _md and _html alike."""
    w, h, rv, rt = data["week"], data["hours"], data["review"], data["retention"]
    B: list[tuple] = [("h1", f"Week {w['number']}: {w['title']}" + (" (draft)" if w["draft"] else ""))]
    B.append(("p", f"{data['plan']}, {w['start']} to {w['end']} ({w['when']} week); "
                   f"report of {data['generated_at']}."))
    if w["goal"]:
        B.append(("p", f"Goal: {w['goal']}"))

    B.append(("h2", "Hours"))
    B.append(("p", f"{h['logged']:.1f} h logged this week against a commitment of "
                   f"{_range(h['commitment_min'], h['commitment_max'])} per week "
                   f"(the week's day blocks budget {_range(h['budget_min'], h['budget_max'])}); "
                   f"{h['on_week_items']:.1f} h in total on this week's items."))
    B.append(("table", ["day", "logged", "planned"],
              [[datetime.fromisoformat(d["day"]).strftime("%a %Y-%m-%d"), f"{d['logged']:.2f} h",
                f"{d['planned']:.2f} h"] for d in h["by_day"]]))
    B.append(("img", "hours per day", images["hours"]))
    if h["by_item"]:
        B.append(("p", "Time this week by item: " +
                  ", ".join(f"{x['item']} {x['hours']:.2f} h" for x in h["by_item"])))

    B.append(("h2", f"Items: {data['items_done']} done, {data['items_open']} open, "
                    f"{data['items_skipped']} skipped"))
    mark = {"done": "done", "skipped": "skipped", "in_progress": "in progress", "todo": "open"}
    B.append(("table", ["status", "item", "time", "note"],
              [[mark[i["status"]], f"{i['label'] + ': ' if i['label'] else ''}{i['title']}",
                f"{i['hours']:.2f} h" if i["hours"] else "", "yes" if i["note"] else ""]
               for i in data["items"]]))

    B.append(("h2", "Lab results"))
    if data["labs"]:
        rows = []
        for r in data["labs"]:
            nums = {k: v for k, v in r["metrics"].items() if k != "week"}
            result = f"{'PASS' if r['passed'] else 'FAIL'} {r['criteria_passed']}/{r['criteria']}"
            if r["failed"]:
                result += " (failed: " + ", ".join(r["failed"]) + ")"
            rows.append([r["at"][:16].replace("T", " "), f"{r['lab']} ({r['kind']})", result,
                         f"{r['duration_s']:.1f} s" if r["duration_s"] else "",
                         "; ".join(f"{k} = {_fmt(v)}" for k, v in nums.items())])
        B.append(("table", ["when (UTC)", "lab", "result", "took", "numbers"], rows))
    else:
        B.append(("p", "No lab runs for this week yet (`z2v check LAB`, `z2v lab run LAB`, "
                       "`z2v check summary FILE --week N`)."))

    B.append(("h2", "Concepts and retention"))
    week_mean = f"{rt['week_mean']:.0%}" if rt["week_mean"] is not None else "-"
    all_mean = f"{rt['all_mean']:.0%}" if rt["all_mean"] is not None else "-"
    B.append(("p", f"Retention (FSRS retrievability, the predicted chance of recall now): this week's "
                   f"concepts {week_mean} over {rt['week_reviewed']} reviewed card(s); all cards {all_mean} "
                   f"over {rt['all_reviewed']}; target {rt['target']:.0%}. Due now: {rv['due_now']} "
                   f"card(s), {rv['due_within_week']} more within a week, {rv['held']} held until their week "
                   f"starts. Reviews during this week: {rv['reviews_in_week']} ("
                   + ", ".join(f"{n} {k}" for k, n in rv["ratings_in_week"].items()) + ")."))
    if data["cards"]:
        rows = []
        for c in data["cards"]:
            if not c["available"]:
                due = f"from {c['available_from']}"
            else:
                due = c["due"][:16].replace("T", " ")
            rec = f"{c['retrievability']:.0%}" if c["retrievability"] is not None else "new"
            rows.append([c["question"], c["state"], str(c["reviews"]), due, rec])
        B.append(("table", ["concept", "state", "reviews", "due (UTC)", "recall now"], rows))
    B.append(("img", "retention of this week's concepts", images["retention"]))
    B.append(("img", "reviews due in the next days", images["forecast"]))
    return B


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_md(data: dict, images: dict[str, bytes]) -> str:
    out = []
    for b in _blocks(data, images):
        kind = b[0]
        if kind == "h1":
            out.append(f"# {b[1]}")
        elif kind == "h2":
            out.append(f"## {b[1]}")
        elif kind == "p":
            out.append(b[1])
        elif kind == "table":
            out.append("| " + " | ".join(b[1]) + " |")
            out.append("|" + "---|" * len(b[1]))
            out.extend("| " + " | ".join(_md_cell(x) for x in row) + " |" for row in b[2])
        elif kind == "img":
            out.append(f"![{b[1]}](data:image/png;base64,{base64.b64encode(b[2]).decode()})")
        out.append("")
    return "\n".join(out)


CSS = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;
vertical-align:top}th{background:#f3f3f3}img{max-width:100%;display:block;margin:.5rem 0}h2{margin-top:2rem}"""


def render_html(data: dict, images: dict[str, bytes]) -> str:
    e = html.escape
    blocks = _blocks(data, images)
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{e(blocks[0][1])}</title><style>{CSS}</style></head><body>"]
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{e(b[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{e(b[1])}</p>")
        elif kind == "table":
            out.append("<table><tr>" + "".join(f"<th>{e(x)}</th>" for x in b[1]) + "</tr>")
            out.extend("<tr>" + "".join(f"<td>{e(str(x))}</td>" for x in row) + "</tr>" for row in b[2])
            out.append("</table>")
        elif kind == "img":
            out.append(f'<img alt="{e(b[1])}" src="data:image/png;base64,{base64.b64encode(b[2]).decode()}">')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render_png(data: dict) -> bytes:
    """One page: the key numbers as text, then the three charts."""
    from matplotlib.figure import Figure

    w, h, rv, rt = data["week"], data["hours"], data["review"], data["retention"]
    lines = [
        f"{data['plan']}: week {w['number']} ({w['start']} to {w['end']})",
        f"Hours: {h['logged']:.1f} h logged; commitment {_range(h['commitment_min'], h['commitment_max'])}"
        f" per week, block budget {_range(h['budget_min'], h['budget_max'])}",
        f"Items: {data['items_done']} done, {data['items_open']} open, {data['items_skipped']} skipped",
    ]
    for i in [i for i in data["items"] if i["status"] in ("todo", "in_progress")][:6]:
        lines.append(f"   open: {_short(i['title'], 80)}")
    for r in data["labs"][-4:]:
        nums = "; ".join(f"{k}={_fmt(v)}" for k, v in r["metrics"].items() if k != "week")
        lines.append(f"Lab {r['lab']} ({r['kind']}): {'PASS' if r['passed'] else 'FAIL'} "
                     f"{r['criteria_passed']}/{r['criteria']}  {_short(nums, 70)}")
    week_mean = f"{rt['week_mean']:.0%}" if rt["week_mean"] is not None else "-"
    lines.append(f"Concepts: {rv['due_now']} due now, retention this week {week_mean} "
                 f"(target {rt['target']:.0%}), {rv['reviews_in_week']} reviews this week")
    n_cards = max(1, sum(c["retrievability"] is not None for c in data["cards"]))
    heights = [0.19 * len(lines) + 0.3, 3, 1.2 + 0.35 * n_cards, 2.4]
    fig = Figure(figsize=(8.5, sum(heights) + 1))
    grid = fig.add_gridspec(4, 1, height_ratios=heights, hspace=0.6)
    text_ax = fig.add_subplot(grid[0])
    text_ax.set_axis_off()
    text_ax.text(0, 1, f"Week {w['number']}: {w['title']}", fontsize=14, weight="bold", va="top",
                 transform=text_ax.transAxes)
    text_ax.text(0, 0.9, "\n".join(lines), fontsize=9, va="top", family="monospace",
                 transform=text_ax.transAxes)
    _hours_axes(fig.add_subplot(grid[1]), data)
    _retention_axes(fig.add_subplot(grid[2]), data)
    _forecast_axes(fig.add_subplot(grid[3]), data)
    return _png(fig)


def render(data: dict, fmt: str) -> bytes:
    if fmt == "png":
        return render_png(data)
    images = charts(data)
    if fmt == "md":
        return render_md(data, images).encode()
    if fmt == "html":
        return render_html(data, images).encode()
    if fmt == "json":
        return json.dumps(data, indent=2).encode()
    raise ReportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
