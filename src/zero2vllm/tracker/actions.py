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

import os
from datetime import date, datetime, time, timedelta

from zero2vllm.tracker import plan as planlib
from zero2vllm.tracker import progress
from zero2vllm.tracker.durations import DurationError, format_duration, parse_duration
from zero2vllm.tracker.plan import Item, Plan, RefError
from zero2vllm.tracker.store import Store

MAX_LOG_SECONDS = 24 * 3600  # one entry is one day's study; more is a typo or needs --on per day
TIMER_CAP_ENV = "ZERO2VLLM_TIMER_CAP"  # a timer longer than this was forgotten (default 12h)
MAX_NOTE_CHARS = 200_000  # a long 1-page summary is ~5,000; the dashboard's form caps the same

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
    words; see `Plan.find`); a page sends ids it rendered itself, so `exact=True` takes
    only an id, and an id that left the plan (re-imported meanwhile) never matches another item."""
    if exact:
        item = plan.item(ref)
        if item is None:
            raise ActionError(f"no item {ref!r} in the plan (was the plan re-imported? reload the page)")
        return item
    try:
        return plan.find(ref)
    except RefError as exc:
        raise ActionError(str(exc)) from None


# -- status ----------------------------------------------------------------------------------------
def set_status(store: Store, plan: Plan, ref: str, status: str, *, exact: bool = False) -> str:
    """done / skipped / todo (reopen) on one item, journalled as `done ID`, `skip ID`, `reopen ID`."""
    item = find_item(plan, ref, exact=exact)
    if status not in STATUS_VERBS:
        raise ActionError(f"unknown status {status!r}; use done, skipped or todo")
    name, verb = STATUS_VERBS[status]
    with store.transaction():  # closing an item stops its timer: one change, one undo
        stopped, mark = "", store.journal_mark()
        timer = store.timer()
        if timer is not None and timer.item_id == item.id and status in ("done", "skipped"):
            stopped = " " + _stop(store, timer, progress.now(), cap_ok=True, what="stop its timer")
        store.change_status(item.id, status, f"{name} {item.id}")
        store.merge_journal_since(mark)
    return f"{item.id}: {verb}.{stopped}"


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


def check_day(store: Store, on: date, *, force: bool = False) -> None:
    """A day time may count on: not in the future, not before the plan starts (unless forced:
    a log for a study session before the plan was set up)."""
    if force:
        return
    today = progress.local_day(progress.now())
    if on > today:
        message = f"{on} is in the future (today is {today}); log time on the day you studied"
        raise ActionError(message, cli=f"{message}, or pass --force if you mean it")
    start = progress.start_date(store)
    if on < start:
        message = f"{on} is before the plan starts ({start}); move the start on the Plan page"
        raise ActionError(message, cli=f"{on} is before the plan starts ({start}); move it with "
                                       "`z2v plan start --on DATE`, or pass --force")


def check_seconds(duration: str) -> int:
    try:
        seconds = parse_duration(duration)
    except DurationError as exc:
        raise ActionError(str(exc)) from None
    if seconds > MAX_LOG_SECONDS:
        message = f"{duration} is more than a day; log each day separately"
        raise ActionError(message, cli=f"{message} with --on")
    return seconds


def log_time(store: Store, plan: Plan, ref: str, duration: str, day: str | None = None,
             note: str | None = None, *, exact: bool = False, force: bool = False) -> str:
    """Log DURATION ("30m", "1h15m", "1.5h") on an item for DAY (default today)."""
    item = find_item(plan, ref, exact=exact)
    seconds = check_seconds(duration)
    on = parse_day(day)
    check_day(store, on, force=force)
    if note and len(note) > MAX_NOTE_CHARS:
        raise ActionError(f"the note is over {MAX_NOTE_CHARS:,} characters; shorten it")
    store.log_time(item.id, on.isoformat(), seconds, f"log {format_duration(seconds)} on {item.id}",
                   note=note or None)
    total = store.seconds_by_item().get(item.id, 0)
    return f"Logged {format_duration(seconds)} on {item.id} for {on} (total {format_duration(total)})."


class TimerOverCap(ActionError):
    """Stopping now would log more than the cap: the timer was probably forgotten."""


def timer_cap() -> int:
    """Seconds a timer may log at most without asking ($ZERO2VLLM_TIMER_CAP, default 12h)."""
    try:
        return parse_duration(os.environ.get(TIMER_CAP_ENV) or "12h")
    except DurationError:
        raise ActionError(f"${TIMER_CAP_ENV} is not a duration; write it like 12h") from None


def split_by_day(start: datetime, end: datetime) -> list[tuple[str, int, datetime, datetime]]:
    """(day, seconds, from, to) for each local day between start and end: a timer running past
    midnight counts on both days, as the hours were spent."""
    out, cur = [], start
    while cur < end:
        midnight = datetime.combine(progress.local_day(cur) + timedelta(days=1), time.min).astimezone()
        upto = min(end, midnight)
        out.append((progress.local_day(cur).isoformat(), int((upto - cur).total_seconds()), cur, upto))
        cur = upto
    return out


def _stop(store: Store, timer, at: datetime, *, cap_ok: bool, what: str) -> str:
    """Stop `timer` at `at` inside the caller's transaction; the sentence saying what was logged."""
    ran = int((at - timer.started_at).total_seconds())
    cap, capped = timer_cap(), ""
    end = at
    if ran > cap:
        if not cap_ok:
            message = (f"the timer on {timer.item_id} ran {format_duration(ran)} (since "
                       f"{timer.started_at.astimezone():%Y-%m-%d %H:%M}), over the {format_duration(cap)} cap")
            exc = TimerOverCap(message + "; stop it at the time you stopped studying",
                               cli=message + "; `z2v stop --yes` logs the cap, `z2v stop --at HH:MM` "
                                   "logs until then, `z2v timer discard` drops it")
            exc.question, exc.cap = message, cap
            raise exc
        end = timer.started_at + timedelta(seconds=cap)
        capped = f" (capped at {format_duration(cap)}: the timer ran {format_duration(ran)})"
    segments = split_by_day(timer.started_at, end)
    if store.stop_timer(segments, what, expect=timer) is None:
        raise ActionError("the timer was stopped elsewhere meanwhile",
                          cli="the timer was stopped by another process meanwhile")
    logged = sum(seg[1] for seg in segments)
    days = ""
    if len([seg for seg in segments if seg[1] > 0]) > 1:
        days = " (" + ", ".join(f"{format_duration(sec)} on {day}" for day, sec, _, _ in segments if sec) + ")"
    return f"Stopped {timer.item_id}: logged {format_duration(logged)}{days}{capped}."


def start_timer(store: Store, plan: Plan, ref: str, at: datetime | None = None, *,
                exact: bool = False) -> str:
    """Start a timer on an item. A running timer is stopped first (its time logged on the days
    it covered, capped), in the same transaction: a crash or a second start never loses a stop."""
    item = find_item(plan, ref, exact=exact)
    at = at or progress.now()
    lines = []
    with store.transaction():
        running = store.timer()
        if running is not None and running.item_id == item.id:
            since = running.started_at.astimezone()
            return (f"{item.id}: the timer is already running (since {since:%H:%M}, "
                    f"{format_duration(max(int((at - running.started_at).total_seconds()), 0))}).")
        if running is not None:
            lines.append(_stop(store, running, at, cap_ok=True, what="stop (timer switched)"))
        store.start_timer(item.id, at, f"start timer on {item.id}")
    lines.append(f"Timer started on {item.id} at {at:%H:%M}.")
    return "\n".join(lines)


def parse_at(text: str, started: datetime, now: datetime) -> datetime:
    """When the learner stopped: HH:MM (the last such time before now) or YYYY-MM-DD HH:MM."""
    text = (text or "").strip()
    try:
        if len(text) <= 5:
            clock = time.fromisoformat(text.zfill(5))
            at = datetime.combine(progress.local_day(now), clock).astimezone()
            if at > now:
                at -= timedelta(days=1)
        else:
            at = datetime.fromisoformat(text)
            at = at.astimezone() if at.tzinfo is None else at
    except ValueError:
        message = f"{text!r} is not a time; write HH:MM or YYYY-MM-DD HH:MM"
        raise ActionError(message, cli=f"--at {message}") from None
    if at > now:
        raise ActionError(f"{text} is in the future; give the time you stopped", cli=f"--at {text} is in the future")
    if at < started:
        raise ActionError(f"{text} is before the timer started ({started.astimezone():%Y-%m-%d %H:%M})",
                          cli=f"--at {text} is before the timer started ({started.astimezone():%Y-%m-%d %H:%M})")
    return at


def stop_timer(store: Store, at: datetime | str | None = None, *, cap_ok: bool = False) -> str:
    """Stop the running timer and log its time on the days it covered (also after a reboot).
    Over the cap it refuses (TimerOverCap) unless `cap_ok`, which logs the cap."""
    with store.transaction():
        timer = store.timer()
        if timer is None:
            raise ActionError("no timer is running", cli="no timer is running; start one with `z2v start ITEM`")
        now = progress.now()
        end = parse_at(at, timer.started_at, now) if isinstance(at, str) else (at or now)
        return _stop(store, timer, end, cap_ok=cap_ok, what=f"stop timer on {timer.item_id}")


def discard_timer(store: Store) -> str:
    """Drop the running timer without logging anything (undo brings it back)."""
    timer = store.discard_timer("discard timer")
    if timer is None:
        raise ActionError("no timer is running")
    ran = max(int((progress.now() - timer.started_at).total_seconds()), 0)
    return f"Discarded the timer on {timer.item_id} ({format_duration(ran)}, nothing logged)."


# -- time entries: see and fix one (the dashboard's Time entries page) -----------------------------
def edit_entry(store: Store, entry_id: int, duration: str, day: str, note: str | None = None,
               *, force: bool = False) -> str:
    entry = store.entry(entry_id)
    if entry is None:
        raise ActionError(f"there is no time entry {entry_id} (deleted meanwhile? reload the page)")
    seconds = check_seconds(duration)
    on = parse_day(day)
    check_day(store, on, force=force)
    if note and len(note) > MAX_NOTE_CHARS:
        raise ActionError(f"the note is over {MAX_NOTE_CHARS:,} characters; shorten it")
    store.edit_entry(entry_id, f"edit entry {entry_id} on {entry.item_id}", day=on.isoformat(),
                     seconds=seconds, note=note or None)
    return f"Entry {entry_id} on {entry.item_id}: {format_duration(seconds)} on {on}."


def delete_entry(store: Store, entry_id: int) -> str:
    entry = store.delete_entry(entry_id, f"delete entry {entry_id}")
    if entry is None:
        raise ActionError(f"there is no time entry {entry_id} (deleted meanwhile? reload the page)")
    return (f"Deleted entry {entry_id}: {format_duration(entry.seconds)} on {entry.item_id} "
            f"for {entry.day} (undo brings it back).")


# -- notes and undo --------------------------------------------------------------------------------
def save_note(store: Store, plan: Plan, ref: str, text: str, *, exact: bool = False) -> str:
    """Replace an item's note (Markdown). Browsers send CRLF line ends; the store keeps LF."""
    item = find_item(plan, ref, exact=exact)
    text = text.replace("\r\n", "\n")
    if len(text) > MAX_NOTE_CHARS:
        raise ActionError(f"the note is over {MAX_NOTE_CHARS:,} characters; shorten it")
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
    note = ""
    if start.weekday() != 0:  # one calendar: the plan's day blocks are weekdays, weeks run Mon-Sun
        asked, start = start, progress.monday_of(start)
        note = (f" ({asked} is a {asked:%A}; weeks run Monday to Sunday, as the plan's day blocks "
                f"do, so week 1 is the week of {asked})")
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
