"""What the dashboard shows beyond `progress.status()`, as plain data: the burn-up series, the
study calendar, streaks, a week grouped by block, the labs with their evidence.

Read-side only: the changes a page makes go through `zero2vllm.tracker.actions`, the same functions
the CLI's commands call. Nothing here knows about HTML: `zero2vllm.web` turns these dicts
into pages, and any other front end can call the same functions.
"""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from pathlib import Path

from zero2vllm.tracker import plan as planlib
from zero2vllm.tracker import progress
from zero2vllm.tracker.actions import ActionError
from zero2vllm.tracker.plan import Plan
from zero2vllm.tracker.store import Store


# -- the plan, parsed once per text ----------------------------------------------------------------
_plan_cache: dict[str, Plan] = {}
_plan_lock = threading.Lock()


def current_plan(store: Store) -> Plan:
    """`progress.load_plan`, but a stored text is parsed once per process, not once per page.

    Plans are never mutated by the tracker, so one parsed object can serve every request."""
    row = store.get_plan()
    if row is None:
        return progress.load_plan(store)  # imports the bundled plan into a new store
    text = row["source_text"]
    with _plan_lock:
        plan = _plan_cache.get(text)
    if plan is None:
        plan = planlib.parse(text)
        with _plan_lock:
            if len(_plan_cache) > 8:
                _plan_cache.clear()
            _plan_cache[text] = plan
    return plan


# -- burn-up, calendar, streaks ------------------------------------------------------------------
def burnup(store: Store, plan: Plan, today: date, by_day: dict[str, int] | None = None) -> dict:
    """Cumulative planned hours (block budgets, lower bounds) and hours done, per day from the
    plan start to its end (or today, if later). Time logged before the start counts on day one;
    done stops at today."""
    start = progress.start_date(store)
    end = max(progress.week_dates(start, len(plan.weeks))[1], today)
    planned = progress.planned_hours_by_day(plan, start)
    by_day = store.seconds_by_day() if by_day is None else by_day
    before = sum(s for d, s in by_day.items() if d < start.isoformat())
    days, planned_cum, done_cum = [], [], []
    p_total, d_total = 0.0, before / 3600
    day = start
    while day <= end:
        p_total += planned.get(day, 0.0)
        days.append(day)
        planned_cum.append(round(p_total, 3))
        if day <= today:
            d_total += by_day.get(day.isoformat(), 0) / 3600
            done_cum.append(round(d_total, 3))
        day += timedelta(days=1)
    return {"start": start, "end": end, "today": today, "days": days,
            "planned": planned_cum, "done": done_cum}


def streaks(by_day: dict[str, int], today: date) -> dict:
    """Days studied (any time logged), the current streak (a streak is still alive today until
    the day ends, so an empty today counts from yesterday), and the longest one."""
    studied = sorted(date.fromisoformat(d) for d, s in by_day.items() if s > 0)
    longest = run = 0
    prev = None
    for d in studied:
        run = run + 1 if prev is not None and (d - prev).days == 1 else 1
        longest = max(longest, run)
        prev = d
    have = set(studied)
    current = 0
    day = today if today in have else today - timedelta(days=1)
    while day in have:
        current += 1
        day -= timedelta(days=1)
    total = sum(s for s in by_day.values() if s > 0)
    return {"current": current, "longest": longest, "days_studied": len(studied),
            "studied_today": today in have,
            "hours_per_study_day": round(total / 3600 / len(studied), 2) if studied else 0.0}


def calendar(store: Store, plan: Plan, today: date, max_weeks: int = 53,
             by_day: dict[str, int] | None = None) -> dict:
    """Hours per day on a Monday-first grid covering the plan (and any earlier study),
    at most `max_weeks` columns ending at the plan's end or today, whichever is later."""
    start = progress.start_date(store)
    end = max(progress.week_dates(start, len(plan.weeks))[1], today)
    by_day = store.seconds_by_day() if by_day is None else by_day
    studied = [d for d, s in by_day.items() if s > 0]
    first = progress.monday_of(min([start] + ([date.fromisoformat(min(studied))] if studied else [])))
    last = progress.monday_of(end) + timedelta(days=6)
    if (last - first).days // 7 + 1 > max_weeks:
        first = last - timedelta(days=7 * max_weeks - 1)
    planned = progress.planned_hours_by_day(plan, start)
    weeks = []
    day = first
    while day <= last:
        column = []
        for _ in range(7):
            key = day.isoformat()
            column.append({"day": day, "hours": by_day.get(key, 0) / 3600,
                           "planned": planned.get(day, 0.0), "future": day > today,
                           "today": day == today})
            day += timedelta(days=1)
        weeks.append(column)
    return {"weeks": weeks, "first": first, "last": last, "streaks": streaks(by_day, today)}


# -- a week, grouped as the plan writes it ---------------------------------------------------------
def week_view(store: Store, plan: Plan, number: int | None) -> dict:
    """Week NUMBER (default: this week, clamped to the plan) with items grouped by block, each
    with its progress and note, plus hours logged per block this week."""
    start = progress.start_date(store)
    today = progress.local_day(progress.now())
    week = progress.pick_week(store, plan, number)
    if week is None:
        have = ", ".join(str(w.number) for w in plan.weeks)
        raise ActionError(f"there is no week {number}; the plan has weeks {have}")
    position = plan.weeks.index(week) + 1
    first, last = progress.week_dates(start, position)
    by_day = store.seconds_by_day(first.isoformat(), last.isoformat())
    prog = progress.progress(store, plan)
    notes = store.notes()
    from zero2vllm.tracker import evidence

    labs = evidence.by_item(store, plan)  # each lab's status beside the item it closes
    groups: list[dict] = []
    for item in week.items:
        if not groups or groups[-1]["index"] != item.block:
            block = week.blocks[item.block] if item.block is not None else None
            logged = 0.0
            if block is not None:
                logged = sum(by_day.get((first + timedelta(days=wd)).isoformat(), 0)
                             for wd in block.weekdays) / 3600
            groups.append({"index": item.block, "block": block, "hours_logged": round(logged, 2),
                           "items": []})
        groups[-1]["items"].append({"item": item, "progress": prog[item.id],
                                    "note": notes.get(item.id), "lab": labs.get(item.id)})
    items = [prog[i.id] for i in week.items]
    return {
        "week": week, "position": position, "start": first, "end": last,
        "is_current": first <= today <= last, "groups": groups,
        "done": sum(p.status == "done" for p in items),
        "skipped": sum(p.status == "skipped" for p in items), "total": len(items),
        "hours_logged": round(sum(by_day.values()) / 3600, 2),
        "concepts": [c for c in week.concepts if c.kind == "concept"],
        "insights": [c for c in week.concepts if c.kind == "insight"],
        "timer": store.timer(),
    }


# -- labs and their evidence -----------------------------------------------------------------------
def labs_view(store: Store, plan: Plan | None) -> list[dict]:
    """Every lab (and any other subject with recorded runs, such as `kv-cache` profiles) with
    its status (the one rule in zero2vllm.tracker.evidence), its plan item and its runs, newest first."""
    from zero2vllm.tracker import evidence

    out = []
    for st in evidence.statuses(store, plan, others=True):
        lab = st.lab
        out.append({
            "id": st.id, "title": lab.title if lab else st.id, "week": lab.week if lab else None,
            "summary": lab.summary if lab else "", "state": st.state, "runs": st.runs,
            "last_check": st.last_check, "item": st.item, "item_status": st.item_status,
            "unlinked_item": lab.plan_item if st.unlinked else None,
        })
    return out


def artifact_path(store: Store, run_id: int, index: int, root: Path) -> Path:
    """The file of artifact INDEX of lab run RUN_ID, only if it lies inside ROOT (the data
    directory): a path in the store never lets the dashboard read other files."""
    run = next((r for r in store.lab_runs() if r["id"] == run_id), None)
    if run is None or not 0 <= index < len(run["artifacts"]):
        raise FileNotFoundError(f"no artifact {index} on run {run_id}")
    path = Path(run["artifacts"][index]).resolve()
    if not inside(path, root):
        raise PermissionError(f"{path} is outside the data directory {root}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} no longer exists")
    return path


def inside(path: Path, root: Path) -> bool:
    """Whether PATH (symlinks resolved) lies inside ROOT."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def numeric_series(metrics: dict) -> list[dict]:
    """Lists of numbers among a run's metrics, to plot: each against a same-length x list
    (lengths, steps, tokens, batch sizes) when the run has one, else against its index."""
    lists = {k: v for k, v in metrics.items()
             if isinstance(v, list) and len(v) >= 2 and all(isinstance(x, (int, float)) for x in v)}
    x_names = [k for k in ("lengths", "steps", "step", "tokens", "batch_sizes", "concurrency") if k in lists]
    out = []
    for name, ys in lists.items():
        if name in x_names:
            continue
        x_name = next((x for x in x_names if len(lists[x]) == len(ys)), None)
        xs = lists[x_name] if x_name else list(range(len(ys)))
        out.append({"name": name, "x_name": x_name or "index", "xs": xs, "ys": ys})
    return out


# -- concept review ----------------------------------------------------------------------------------
def review_installed() -> bool:
    """Whether `fsrs` (the `review` extra) is installed; without it the review page says so."""
    import importlib.util

    return importlib.util.find_spec("fsrs") is not None


def cards_due(store: Store, plan: Plan, now: datetime) -> int | None:
    """How many cards are due now (as `z2v review` counts them); None without fsrs."""
    if not review_installed():
        return None
    from zero2vllm.tracker import review

    return len(review.due_cards(store, plan, now))


def review_view(store: Store, plan: Plan, now: datetime, *, week: int | None = None,
                reveal: str | None = None) -> dict:
    """The review page: the numbers `z2v review` starts and ends with, the card to ask now,
    and how many cards fall due on each of the next days.

    The card asked is the first of `review.due_cards` (week gates applied there), except that
    cards already reviewed today wait while others are due: the CLI's "a card seen in this
    session waits while unseen ones remain", for a page that has no session. REVEAL names the
    card whose answer to show; if it is no longer due (rated meanwhile elsewhere), the page
    asks the next card instead."""
    from zero2vllm.tracker import review

    if week is not None and plan.week(week) is None:
        have = ", ".join(str(w.number) for w in plan.weeks)
        raise ActionError(f"there is no week {week}; the plan has weeks {have}")
    today = progress.local_day(now)
    due = review.due_cards(store, plan, now, week=week)
    due.sort(key=lambda c: (c.last_review is not None and progress.local_day(c.last_review) == today, c.due))
    shown = next((c for c in due if c.id == reveal), None) if reveal else None
    card = shown or (due[0] if due else None)
    st = review.stats(store, plan, now, week=week)
    next_due = datetime.fromisoformat(st["next_due"]) if st["next_due"] else None
    return {
        "stats": st, "due": due, "card": card, "revealed": shown is not None, "week": week,
        "next_due": next_due,
        "next_in": review.human_delta(next_due - review.utc(now)) if next_due else None,
        "forecast": review.forecast(review.all_cards(store, plan, now, week=week), now, days=7),
        "ratings": review.RATINGS,
    }
