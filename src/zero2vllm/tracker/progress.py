"""Tracking: the plan in the store, item references, progress, the calendar, pace and projections.

The CLI and the dashboard both call these functions; neither computes anything on its own.

Definitions (shown to the user in `z2v status --help` and the docs):
- The plan starts on the Monday of week 1 (`z2v plan start --on DATE`; default: the Monday of the
  week the plan was first imported); a DATE on another weekday is snapped to its Monday, and
  the command says so. Week N covers start + 7(N-1) days .. +6, Monday to Sunday.
- A day block ("Monday-Tuesday (2 hours)") is a budget for the time logged on its days.
- Planned hours to date: the block budgets (their lower bound) of every day before today.
- Pace: hours logged minus planned hours to date (positive: ahead).
- Projected finish: today + the hours left in the plan at your average weekly rate so far.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from zero2vllm.tracker import plan as planlib
from zero2vllm.tracker.plan import Item, Plan, PlanError, Progress
from zero2vllm.tracker.store import Store

BUNDLED_NAME = "bundled default plan"


# -- clock ----------------------------------------------------------------------------------------
def now() -> datetime:
    """The current local time, aware. ZERO2VLLM_NOW (ISO 8601) fixes it, for tests and demos."""
    fixed = os.environ.get("ZERO2VLLM_NOW")
    if fixed:
        dt = datetime.fromisoformat(fixed)
        return dt.astimezone() if dt.tzinfo else dt.astimezone()
    return datetime.now().astimezone()


def local_day(dt: datetime) -> date:
    return dt.astimezone().date()


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


# -- the plan in the store ------------------------------------------------------------------------
def read_plan_file(path: Path) -> tuple[str, Plan]:
    try:
        data = planlib.read_capped(path, planlib.MAX_PLAN_BYTES, "plan text")
    except OSError as exc:
        raise PlanError(f"cannot read {path}: {exc.strerror}") from None
    text = planlib.decode(data)
    return text, planlib.parse(text)


def load_plan(store: Store) -> Plan:
    """The stored plan; a new store gets the bundled default plan on first use."""
    row = store.get_plan()
    if row is None:
        from zero2vllm.paths import default_plan_path

        # the bundled plan's annotations ("watched for 30 min") are its author's progress, not
        # this learner's: they become progress only when the learner imports their own text
        text = default_plan_path().read_text(encoding="utf-8")
        if not store.set_plan_if_none(text, BUNDLED_NAME):  # another first command won the race
            return parse_cached(store, store.get_plan()["source_text"])
        return planlib.parse(text)
    return parse_cached(store, row["source_text"])


def parse_cached(store: Store, text: str) -> Plan:
    """Parse a plan text once per text: the parse is pickled next to the database, keyed by the
    text's hash (parsing and compiling the format's regexes is a fifth of `z2v status`)."""
    import hashlib
    import pickle

    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = store.path.parent / "cache" / f"plan-{key}.pickle"
    try:
        plan = pickle.loads(path.read_bytes())
        if isinstance(plan, Plan):
            return plan
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError):
        pass
    plan = planlib.parse(text)
    try:
        path.parent.mkdir(exist_ok=True)
        for old in path.parent.glob("plan-*.pickle"):
            old.unlink(missing_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL))
        tmp.replace(path)
    except OSError:
        pass  # a read-only data directory only costs the parse
    return plan


@dataclass
class ImportReport:
    plan: Plan
    items: int
    kept: list[str] = field(default_factory=list)  # ids with progress that survived
    orphaned: list[str] = field(default_factory=list)  # ids with progress no longer in the plan
    logged: list[tuple[str, int]] = field(default_factory=list)  # time taken from annotations
    statuses: list[tuple[str, str]] = field(default_factory=list)


def import_plan(store: Store, text: str, name: str) -> ImportReport:
    """Replace the plan, keep progress of surviving ids, and take progress from annotations.

    Annotations state totals ("watched for 30 min"), so importing the same text twice adds nothing:
    only the part not yet logged becomes a new time entry. Statuses never go backwards.
    """
    plan = planlib.parse(text)
    ids = {i.id for i in plan.items()}
    logged = store.seconds_by_item()
    states = store.states()
    with_progress = set(logged) | {k for k, s in states.items() if s.status != "todo"} | set(store.notes())
    report = ImportReport(plan=plan, items=len(ids))
    report.kept = sorted(with_progress & ids)
    report.orphaned = sorted(with_progress - ids)
    today = local_day(now()).isoformat()
    entries, new_states = [], []
    rank = {"todo": 0, "in_progress": 1, "skipped": 2, "done": 3}
    for item in plan.items():
        p = item.progress
        if p is None:
            continue
        missing = (p.seconds or 0) - logged.get(item.id, 0)
        if missing > 0:
            entries.append((item.id, today, missing))
            report.logged.append((item.id, missing))
        old = states.get(item.id)
        status = p.status or "in_progress"
        if old is None or rank[status] > rank[old.status] or (p.total and old.progress_total != p.total):
            keep = old and rank[old.status] > rank[status]
            new_states.append((item.id, old.status if keep else status, p.done, p.total, p.unit))
            report.statuses.append((item.id, status))
    store.import_plan(text, name, entries, new_states, f"import plan from {name}")
    return report


# -- item references ------------------------------------------------------------------------------
# -- progress -------------------------------------------------------------------------------------
@dataclass
class ItemProgress:
    status: str = "todo"
    seconds: int = 0
    done: float | None = None
    total: float | None = None
    unit: str | None = None

    @property
    def closed(self) -> bool:
        return self.status in ("done", "skipped")


def progress(store: Store, plan: Plan) -> dict[str, ItemProgress]:
    seconds = store.seconds_by_item()
    states = store.states()
    out = {}
    for item in plan.items():
        s = states.get(item.id)
        out[item.id] = ItemProgress(
            status=s.status if s else "todo",
            seconds=seconds.get(item.id, 0),
            done=s.progress_done if s else None,
            total=s.progress_total if s else None,
            unit=s.progress_unit if s else None,
        )
    return out


def export_annotations(plan: Plan, prog: dict[str, ItemProgress]) -> dict[str, str | None]:
    """New annotations for items whose stored progress differs from what their line says."""
    out = {}
    for item in plan.items():
        p = prog[item.id]
        said = item.progress or Progress()
        same = (
            (said.status or "todo") == p.status
            and (said.seconds or 0) == p.seconds
            and (said.total is None or (said.done, said.total) == (p.done, p.total))
        )
        if not same:
            kept = Progress(done=p.done, total=p.total, unit=p.unit) if p.total else None
            out[item.id] = planlib.format_annotation(item, p.status, p.seconds, kept)
    return out


def export_text(store: Store, plan: Plan) -> str:
    return planlib.emit(plan, export_annotations(plan, progress(store, plan)))


# -- calendar, pace, projection -------------------------------------------------------------------
def start_date(store: Store) -> date:
    """The Monday of week 1. One calendar rule: weeks run Monday to Sunday, because the plan's
    day blocks name weekdays ("Monday-Tuesday", "Weekend"); a start stored on another weekday
    (by an older version) counts from its Monday, as `z2v plan start` now snaps it."""
    row = store.get_plan()
    return (row and week_one(row["start_date"], row["imported_at"])) or monday_of(local_day(now()))


def week_one(start_date: str | None, imported_at: str | None) -> date | None:
    """The Monday of week 1 from a plan row's two dates (also the group server's rule): the chosen
    start snapped to its Monday, else the Monday of the day the plan was imported; None if neither
    is a date."""
    try:
        if start_date:
            return monday_of(date.fromisoformat(start_date[:10]))
        if imported_at:
            return monday_of(datetime.fromisoformat(imported_at).astimezone().date())
    except ValueError:
        pass
    return None


def week_dates(start: date, number: int) -> tuple[date, date]:
    first = start + timedelta(days=7 * (number - 1))
    return first, first + timedelta(days=6)


def week_index(plan: Plan, start: date, day: date) -> int:
    """1-based position of `day` in the plan (0 or less: before the start)."""
    return (day - start).days // 7 + 1


def pick_week(store: Store, plan: Plan, number: int | None):
    """Week NUMBER, or this week by the calendar (clamped to the plan); None if there is no such
    week. One rule for the CLI's `z2v week` and the dashboard's week page."""
    if number is not None:
        return plan.week(number)
    idx = week_index(plan, start_date(store), local_day(now()))
    return plan.weeks[min(max(idx, 1), len(plan.weeks)) - 1]


def planned_hours_by_day(plan: Plan, start: date) -> dict[date, float]:
    """Each block's lower budget spread evenly over its days; weeks by their order in the plan."""
    out: dict[date, float] = {}
    for n, week in enumerate(plan.weeks, start=1):
        first, _ = week_dates(start, n)
        for block in week.blocks:
            if not block.weekdays or not block.hours_min:
                continue
            share = block.hours_min / len(block.weekdays)
            for wd in block.weekdays:
                d = first + timedelta(days=wd)
                out[d] = out.get(d, 0.0) + share
    return out


def status(store: Store, plan: Plan, at: datetime | None = None) -> dict:
    """Everything `z2v status` shows, as plain data (also its --json output)."""
    at = at or now()
    today = local_day(at)
    start = start_date(store)
    prog = progress(store, plan)
    index = week_index(plan, start, today)
    current = plan.weeks[index - 1] if 1 <= index <= len(plan.weeks) else None
    end = week_dates(start, len(plan.weeks))[1]

    weeks = []
    for n, week in enumerate(plan.weeks, start=1):
        first, last = week_dates(start, n)
        items = [prog[i.id] for i in week.items]
        weeks.append({
            "number": week.number, "title": week.title, "draft": week.draft,
            "start": first.isoformat(), "end": last.isoformat(),
            "items": len(items), "done": sum(p.status == "done" for p in items),
            "skipped": sum(p.status == "skipped" for p in items),
            "hours_logged": round(sum(p.seconds for p in items) / 3600, 2),
            "budget_min": week.hours_min, "budget_max": week.hours_max,
        })

    this_week = None
    today_block = None
    if current is not None:
        first, last = week_dates(start, index)
        by_day = store.seconds_by_day(first.isoformat(), last.isoformat())
        blocks = []
        for b in current.blocks:
            days = [(first + timedelta(days=wd)).isoformat() for wd in b.weekdays]
            logged = sum(by_day.get(d, 0) for d in days) / 3600
            block = {"label": b.label, "budget_min": b.hours_min, "budget_max": b.hours_max,
                     "days": days, "hours_logged": round(logged, 2), "items": b.items,
                     "today": today.weekday() in b.weekdays}
            blocks.append(block)
            if block["today"]:
                today_block = block
        c = plan.commitment
        this_week = {
            "number": current.number, "title": current.title, "goal": current.goal,
            "draft": current.draft, "start": first.isoformat(), "end": last.isoformat(),
            "hours_logged": round(sum(by_day.values()) / 3600, 2),
            "commitment_min": c.weekly_min if c else None, "commitment_max": c.weekly_max if c else None,
            "budget_min": current.hours_min, "budget_max": current.hours_max, "blocks": blocks,
        }

    planned = planned_hours_by_day(plan, start)
    planned_to_date = sum(h for d, h in planned.items() if d < today)
    planned_total = sum(planned.values())
    logged_total = sum(p.seconds for p in prog.values()) / 3600
    elapsed_days = max((today - start).days, 0)
    projection = None
    if logged_total > 0 and elapsed_days > 0:
        rate = logged_total / elapsed_days  # hours per day so far
        left = max(planned_total - logged_total, 0.0)
        projection = (today + timedelta(days=round(left / rate))).isoformat()
    elif logged_total >= planned_total > 0:
        projection = today.isoformat()

    timer = store.timer()
    timer_info = None
    if timer is not None:
        timer_info = {"item": timer.item_id, "started_at": timer.started_at.isoformat(),
                      "elapsed_s": max(int((at - timer.started_at).total_seconds()), 0)}

    return {
        "today": today.isoformat(),
        "plan": {"title": plan.title, "weeks": len(plan.weeks), "start": start.isoformat(),
                 "end": end.isoformat(), "source": (store.get_plan() or {"source_name": None})["source_name"]},
        "week_index": index,
        "this_week": this_week,
        "today_block": today_block,
        "next": [i.id for i in next_items(plan, prog, current)],
        "weeks": weeks,
        "hours": {"logged": round(logged_total, 2), "planned_to_date": round(planned_to_date, 2),
                  "planned_total": round(planned_total, 2), "pace": round(logged_total - planned_to_date, 2)},
        "projected_finish": projection,
        "scheduled_finish": end.isoformat(),
        "timer": timer_info,
        "items": {"total": len(prog), "done": sum(p.status == "done" for p in prog.values()),
                  "skipped": sum(p.status == "skipped" for p in prog.values())},
    }


def next_items(plan: Plan, prog: dict[str, ItemProgress], current=None, limit: int = 3) -> list[Item]:
    """Open items in plan order: leftovers of earlier weeks first, then this week's, then later."""
    open_items = [i for i in plan.items() if not prog[i.id].closed]
    in_progress = [i for i in open_items if prog[i.id].status == "in_progress"]
    rest = [i for i in open_items if prog[i.id].status != "in_progress"]
    return (in_progress + rest)[:limit]
