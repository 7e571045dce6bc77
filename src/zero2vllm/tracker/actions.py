"""Every change a learner makes to their progress, one rule each, for the CLI and the dashboard.

done / skip / reopen, logging time (durations, the 24-hour limit, the day it counts on), the
timer (starting one stops the running one first), notes, undo, the plan's start date and
importing a plan text. `z2v log ...` and the Log button of the week page both call `log_time`
here, so they can never disagree about what is allowed or what gets stored.

Each function takes the store (and the plan, where an item is named), makes the change through
`Store` (which journals it for undo), and returns a short message saying what it did. A change
that cannot be made raises `ActionError` with a one-line message saying what to do instead;
the CLI turns it into a `Z2VError` (exit code 2), the dashboard into a message on the page.

Only the standard library and zero2vllm's tracker, plan, store and durations are imported:
the CLI's tracking commands import this module, and they must start fast.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from zero2vllm.tracker import plan as planlib
from zero2vllm.tracker import progress
from zero2vllm.tracker.durations import DurationError, format_duration, parse_duration
from zero2vllm.tracker.plan import Item, Plan
from zero2vllm.tracker.store import Store

MAX_LOG_SECONDS = 24 * 3600  # one entry is one day's study; more is a typo or needs --on per day

# status -> (the CLI command that sets it, the word the message uses)
STATUS_VERBS = {"done": ("done", "done"), "skipped": ("skip", "skipped"), "todo": ("reopen", "reopened")}


class ActionError(ValueError):
    """A change that cannot be made. `str(exc)` is the message; `exc.cli` is the same message
    in the command line's words where those name an option or a command (`--on`, `z2v start`)."""

    def __init__(self, message: str, cli: str | None = None):
        super().__init__(message)
        self.cli = cli or message


def find_item(plan: Plan, ref: str, *, exact: bool = False) -> Item:
    """The plan item REF names. The CLI takes what people type (an id, a unique prefix, title
    words; see `progress.resolve`); a page sends ids it rendered itself, so `exact=True` takes
    only an id, and an id that left the plan (re-imported meanwhile) never matches another item."""
    if exact:
        item = plan.item(ref)
        if item is None:
            raise ActionError(f"no item {ref!r} in the plan (was the plan re-imported? reload the page)")
        return item
    try:
        return progress.resolve(plan, ref)
    except progress.RefError as exc:
        raise ActionError(str(exc)) from None


# -- status ----------------------------------------------------------------------------------------
def set_status(store: Store, plan: Plan, ref: str, status: str, *, exact: bool = False) -> str:
    """done / skipped / todo (reopen) on one item, journalled as `done ID`, `skip ID`, `reopen ID`."""
    item = find_item(plan, ref, exact=exact)
    if status not in STATUS_VERBS:
        raise ActionError(f"unknown status {status!r}; use done, skipped or todo")
    name, verb = STATUS_VERBS[status]
    store.change_status(item.id, status, f"{name} {item.id}")
    return f"{item.id}: {verb}."


# -- time ------------------------------------------------------------------------------------------
def parse_day(text: str | None) -> date:
    """The day a log counts on: YYYY-MM-DD, 'today' or 'yesterday' (empty: today)."""
    today = progress.local_day(progress.now())
    if text in (None, "", "today"):
        return today
    if text == "yesterday":
        return today - timedelta(days=1)
    try:
        return date.fromisoformat(text)
    except ValueError:
        message = f"{text!r} is not a date; write YYYY-MM-DD, today or yesterday"
        raise ActionError(message, cli=f"--on {message}") from None


def log_time(store: Store, plan: Plan, ref: str, duration: str, day: str | None = None,
             note: str | None = None, *, exact: bool = False) -> str:
    """Log DURATION ("30m", "1h15m", "1.5h") on an item for DAY (default today)."""
    item = find_item(plan, ref, exact=exact)
    try:
        seconds = parse_duration(duration)
    except DurationError as exc:
        raise ActionError(str(exc)) from None
    if seconds > MAX_LOG_SECONDS:
        message = f"{duration} is more than a day; log each day separately"
        raise ActionError(message, cli=f"{message} with --on")
    on = parse_day(day)
    store.log_time(item.id, on.isoformat(), seconds, f"log {format_duration(seconds)} on {item.id}",
                   note=note or None)
    total = store.seconds_by_item().get(item.id, 0)
    return f"Logged {format_duration(seconds)} on {item.id} for {on} (total {format_duration(total)})."


def start_timer(store: Store, plan: Plan, ref: str, at: datetime | None = None, *,
                exact: bool = False) -> str:
    """Start a timer on an item. A running timer is stopped first, its time logged on the day
    it started; the message then has two lines (what was stopped, what was started)."""
    item = find_item(plan, ref, exact=exact)
    at = at or progress.now()
    lines = []
    running = store.timer()
    if running is not None:
        stopped = store.stop_timer(at, progress.local_day(running.started_at).isoformat(),
                                   "stop (timer switched)")
        if stopped:
            secs = int((at - stopped[0].started_at).total_seconds())
            lines.append(f"Stopped {stopped[0].item_id}: logged {format_duration(secs)}.")
    store.start_timer(item.id, at, f"start timer on {item.id}")
    lines.append(f"Timer started on {item.id} at {at:%H:%M}.")
    return "\n".join(lines)


def stop_timer(store: Store, at: datetime | None = None) -> str:
    """Stop the running timer and log its time on the day it started (also after a reboot)."""
    timer = store.timer()
    if timer is None:
        raise ActionError("no timer is running", cli="no timer is running; start one with `z2v start ITEM`")
    at = at or progress.now()
    result = store.stop_timer(at, progress.local_day(timer.started_at).isoformat(),
                              f"stop timer on {timer.item_id}")
    if result is None:  # another process (the CLI, another tab) stopped it between the two calls
        raise ActionError("the timer was stopped elsewhere meanwhile",
                          cli="the timer was stopped by another process meanwhile")
    secs = int((at - timer.started_at).total_seconds())
    return f"Stopped {timer.item_id}: logged {format_duration(secs)}."


# -- notes and undo --------------------------------------------------------------------------------
def save_note(store: Store, plan: Plan, ref: str, text: str, *, exact: bool = False) -> str:
    """Replace an item's note (Markdown). Browsers send CRLF line ends; the store keeps LF."""
    item = find_item(plan, ref, exact=exact)
    text = text.replace("\r\n", "\n")
    store.set_note(item.id, text, f"note on {item.id}")
    return f"Saved note on {item.id} ({len(text.split())} words)."


def undo(store: Store) -> str:
    """Undo the last journalled change, whichever front end made it."""
    row = store.undo_last()
    if row is None:
        raise ActionError("nothing to undo")
    return f"Undid: {row['summary']} ({row['at']})."


# -- the plan --------------------------------------------------------------------------------------
def set_start_date(store: Store, day: str | None) -> str:
    """The day week 1 starts (normally a Monday); empty: this week's Monday."""
    if store.get_plan() is None:
        progress.load_plan(store)  # a new store: the bundled plan, so there is a start to set
    text = (day or "").strip()
    try:
        start = date.fromisoformat(text) if text else progress.monday_of(progress.local_day(progress.now()))
    except ValueError:
        message = f"{day!r} is not a date; write it as YYYY-MM-DD"
        raise ActionError(message, cli=f"--on {message}") from None
    note = "" if start.weekday() == 0 else f" (a {start:%A}; weeks will run {start:%A} to {start:%A} + 6 days)"
    store.set_start_date(start.isoformat(), f"plan start on {start}")
    return f"Week 1 starts on {start.isoformat()}{note}."


def import_plan_text(store: Store, data: bytes | str, name: str) -> tuple[progress.ImportReport, list[str]]:
    """Import a plan text (bytes are decoded as the CLI decodes files). A text that does not
    parse raises `PlanError` with its line number (pages point at the line), nothing stored.
    Returns the report and what to tell the learner: a headline, then one line per detail."""
    text = planlib.decode(data) if isinstance(data, bytes) else data
    report = progress.import_plan(store, text, name)
    plan = report.plan
    drafts = sum(w.draft for w in plan.weeks)
    lines = [f"Imported {plan.title!r}: {len(plan.weeks)} weeks ({drafts} draft), {report.items} items."]
    lines += [f"logged {format_duration(s)} on {i} (from its annotation)" for i, s in report.logged]
    lines += [f"{i}: {s.replace('_', ' ')}" for i, s in report.statuses]
    if report.kept:
        lines.append(f"kept progress on {len(report.kept)} items")
    if report.orphaned:
        lines.append(f"progress kept in the store for {len(report.orphaned)} items no longer in the "
                     "plan: " + ", ".join(report.orphaned))
    if plan.announced_weeks and plan.announced_weeks > len(plan.weeks):
        lines.append(f"note: the title announces {plan.announced_weeks} weeks; the text has {len(plan.weeks)}")
    return report, lines
