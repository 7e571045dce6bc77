"""Tracking commands: status, week, next, start/stop, log, done/skip/reopen, undo, note, history."""

from __future__ import annotations

import sys

import click

from zero2vllm.commands._app import AppContext, Z2VError, pass_app


def _plan(app: AppContext):
    from zero2vllm.tracker import progress
    from zero2vllm.tracker.plan import PlanError

    try:
        return progress.load_plan(app.store)
    except PlanError as exc:  # a stored plan that no longer parses (edited by hand)
        raise Z2VError(f"the stored plan cannot be read: {exc}; import a fixed one with `z2v plan import`")


def run_action(func, *args, **kwargs):
    """Call a `zero2vllm.tracker.actions` function; its ActionError becomes a one-line Z2VError (exit 2)
    in the command line's words."""
    from zero2vllm.tracker.actions import ActionError

    try:
        return func(*args, **kwargs)
    except ActionError as exc:
        raise Z2VError(exc.cli) from None


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_app
def status_cmd(app: AppContext, as_json: bool) -> None:
    """Where you are: this week and today's block, what's next, progress, hours, pace, finish.

    Pace is hours logged minus the block budgets (lower bounds) of the days before today;
    the projected finish assumes you keep your average rate so far.
    """
    from zero2vllm import ui
    from zero2vllm.tracker import progress
    from zero2vllm.tracker.durations import format_duration

    plan = _plan(app)
    st = progress.status(app.store, plan)
    if as_json:
        ui.echo_json(st)
        return
    con = ui.console()
    p = st["plan"]
    con.print(f"[bold]{plan.title}[/bold]  ({p['start']} to {p['end']}, today {st['today']})")
    tw = st["this_week"]
    if tw is None:
        where = "starts on " + p["start"] if st["week_index"] < 1 else "ended on " + p["end"]
        con.print(f"The plan {where}.")
    else:
        draft = " [draft]" if tw["draft"] else ""
        con.print(f"Week {tw['number']}: {tw['title']}{draft}")
        if tw["goal"]:
            con.print(f"  Goal: {tw['goal']}")
        tb = st["today_block"]
        if tb:
            con.print(f"  Today's block: {tb['label']} ({ui.budget(tb['budget_min'], tb['budget_max'])}), "
                      f"logged {ui.hours(tb['hours_logged'])}")
        commit = ui.budget(tw["commitment_min"], tw["commitment_max"])
        con.print(f"  This week: {ui.hours(tw['hours_logged'])} logged of {commit} committed "
                  f"(blocks budget {ui.budget(tw['budget_min'], tw['budget_max'])})")
        for b in tw["blocks"]:
            frac = b["hours_logged"] / b["budget_min"] if b["budget_min"] else 0
            mark = "<" if b["today"] else " "
            con.print(f"   {mark} {b['label']:<20} {ui.bar(frac, 10)} {ui.hours(b['hours_logged'])} / "
                      f"{ui.budget(b['budget_min'], b['budget_max'])}", markup=False)
    if st["timer"]:
        t = st["timer"]
        from zero2vllm.tracker.actions import timer_cap

        cap = run_action(timer_cap)  # a bad $ZERO2VLLM_TIMER_CAP: one line, exit 2
        hint = (f" (over the {format_duration(cap)} cap: forgotten? `z2v stop --at HH:MM`)"
                if t["elapsed_s"] > cap else "")
        con.print(f"Timer running: {t['item']} for {format_duration(t['elapsed_s'])}{hint}", markup=False)
    if st["next"]:
        con.print("Next:")
        for item_id in st["next"]:
            item = plan.item(item_id)
            con.print(f"  {item_id}  {item.label + ': ' if item.label else ''}{item.title}", markup=False)
    con.print("Progress:")
    for w in st["weeks"]:
        closed = w["done"] + w["skipped"]
        frac = closed / w["items"] if w["items"] else 0
        draft = " (draft)" if w["draft"] else ""
        con.print(f"  W{w['number']} {ui.bar(frac)} {closed}/{w['items']} items, "
                  f"{ui.hours(w['hours_logged'])}{draft}", markup=False)
    h = st["hours"]
    pace = h["pace"]
    word = "ahead" if pace >= 0 else "behind"
    con.print(f"Hours: {ui.hours(h['logged'])} logged, {ui.hours(h['planned_to_date'])} planned to date: "
              f"{abs(pace):.1f}h {word}.")
    if st["projected_finish"]:
        con.print(f"Projected finish: {st['projected_finish']} at your pace "
                  f"(scheduled {st['scheduled_finish']}).")
    else:
        con.print(f"Projected finish: log some time first (scheduled {st['scheduled_finish']}).")


@click.command("week")
@click.argument("number", type=int, required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the week as JSON.")
@pass_app
def week_cmd(app: AppContext, number: int | None, as_json: bool) -> None:
    """The items of week NUMBER (default: this week) with their status and time."""
    from zero2vllm import ui
    from zero2vllm.tracker import progress
    from zero2vllm.tracker.durations import format_duration

    plan = _plan(app)
    week = progress.pick_week(app.store, plan, number)
    if week is None:
        have = ", ".join(str(w.number) for w in plan.weeks)
        raise Z2VError(f"there is no week {number}; the plan has weeks {have}")
    prog = progress.progress(app.store, plan)
    notes = app.store.notes()
    from zero2vllm.tracker import evidence

    labs = evidence.by_item(app.store, plan)  # each lab's status beside the item it closes
    if as_json:
        from dataclasses import asdict

        data = asdict(week)
        for it in data["items"]:
            it["state"] = prog[it["id"]].__dict__
            it["note"] = notes.get(it["id"])
            it["lab"] = labs[it["id"]].as_json() if it["id"] in labs else None
        ui.echo_json(data)
        return
    con = ui.console()
    con.print(f"[bold]Week {week.number}: {week.title}[/bold]{' (draft)' if week.draft else ''}")
    if week.goal:
        con.print(f"Goal: {week.goal}", markup=False)
    by_block = {}
    for item in week.items:
        by_block.setdefault(item.block, []).append(item)
    for b_index, items in by_block.items():
        if b_index is not None:
            b = week.blocks[b_index]
            con.print(f"\n{b.label} ({ui.budget(b.hours_min, b.hours_max)})", markup=False)
        for item in items:
            p = prog[item.id]
            extra = []
            if p.seconds:
                extra.append(format_duration(p.seconds))
            if item.minutes:
                extra.append(f"est {format_duration(item.minutes * 60)}")
            if p.total:
                extra.append(f"{p.done:g}/{p.total:g} {p.unit or ''}".strip())
            if item.id in notes:
                extra.append("note")
            if item.id in labs:
                extra.append(f"lab {labs[item.id].id}: {labs[item.id].state}")
            tail = f"  ({', '.join(extra)})" if extra else ""
            draft = " [draft]" if item.draft else ""
            con.print(f"  {ui.STATUS_MARK[p.status]} {item.id}  {item.label + ': ' if item.label else ''}"
                      f"{item.title}{draft}{tail}", markup=False)
    concepts = [c for c in week.concepts]
    if concepts:
        con.print("\nKey concepts and insights:")
        for c in concepts:
            con.print(f"  - {c.text}", markup=False)


@click.command("next")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def next_cmd(app: AppContext, as_json: bool) -> None:
    """The next open items, in plan order (items in progress first)."""
    from zero2vllm import ui
    from zero2vllm.tracker import progress

    plan = _plan(app)
    items = progress.next_items(plan, progress.progress(app.store, plan), limit=5)
    if as_json:
        ui.echo_json([{"id": i.id, "week": i.week, "kind": i.kind, "title": i.title, "url": i.url}
                      for i in items])
        return
    if not items:
        click.echo("Nothing left: every item is done or skipped.")
    for i in items:
        url = f"  {i.url}" if i.url else ""
        click.echo(f"{i.id}  {i.label + ': ' if i.label else ''}{i.title}{url}")


@click.command("start")
@click.argument("item")
@pass_app
def start_cmd(app: AppContext, item: str) -> None:
    """Start a timer on ITEM (stops a running one first, logging its time)."""
    from zero2vllm.tracker import actions

    click.echo(run_action(actions.start_timer, app.store, _plan(app), item) + " `z2v stop` logs the time.")


@click.command("stop")
@click.option("--at", "at", default=None, metavar="TIME",
              help="When you stopped: HH:MM (the last such time) or 'YYYY-MM-DD HH:MM'.")
@click.option("--yes", "-y", is_flag=True,
              help="Over the cap ($ZERO2VLLM_TIMER_CAP, default 12h): log the cap without asking.")
@pass_app
def stop_cmd(app: AppContext, at: str | None, yes: bool) -> None:
    """Stop the running timer and log its time (also after a crash or reboot).

    Time past midnight counts on each day it covers. A timer that ran longer than the cap was
    probably forgotten: stop asks whether to log the cap (`--yes` does without asking)."""
    from zero2vllm.tracker import actions

    try:
        click.echo(actions.stop_timer(app.store, at, cap_ok=yes))
        return
    except actions.TimerOverCap as exc:
        from zero2vllm.tracker.durations import format_duration

        question = f"{exc.question}. Log {format_duration(exc.cap)} (the cap)?"
        try:
            ok = click.confirm(question, default=False, err=True)
        except click.Abort:  # no terminal to ask on
            raise Z2VError(exc.cli) from None
        if not ok:
            raise Z2VError("nothing logged; the timer still runs. `z2v stop --at HH:MM` logs until "
                           "then, `z2v timer discard` drops it") from None
    except actions.ActionError as exc:
        raise Z2VError(exc.cli) from None
    click.echo(run_action(actions.stop_timer, app.store, at, cap_ok=True))


@click.group("timer")
def timer_group() -> None:
    """The running timer: `z2v timer discard` drops it without logging."""


@timer_group.command("discard")
@pass_app
def timer_discard(app: AppContext) -> None:
    """Drop the running timer without logging its time (`z2v undo` brings it back)."""
    from zero2vllm.tracker import actions

    click.echo(run_action(actions.discard_timer, app.store))


@click.command("log")
@click.argument("item")
@click.argument("duration")
@click.option("--on", "on", default=None, help="The day you studied (YYYY-MM-DD, 'today', 'yesterday').")
@click.option("--note", default=None, help="A note for this entry.")
@click.option("--force", is_flag=True, help="Accept a day in the future or before the plan starts.")
@pass_app
def log_cmd(app: AppContext, item: str, duration: str, on: str | None, note: str | None,
            force: bool) -> None:
    """Log time on ITEM: DURATION like 30m, 1h15m or 1.5h."""
    from zero2vllm.tracker import actions

    click.echo(run_action(actions.log_time, app.store, _plan(app), item, duration, on, note, force=force))


def _status_command(name: str, status: str, help_text: str):
    @click.command(name, help=help_text)
    @click.argument("item")
    @pass_app
    def cmd(app: AppContext, item: str) -> None:
        from zero2vllm.tracker import actions

        click.echo(run_action(actions.set_status, app.store, _plan(app), item, status))

    return cmd


done_cmd = _status_command("done", "done", "Mark ITEM done.")
skip_cmd = _status_command("skip", "skipped", "Skip ITEM (counts as closed, not done).")
reopen_cmd = _status_command("reopen", "todo", "Reopen ITEM (back to to-do; its time stays).")


@click.command("undo")
@pass_app
def undo_cmd(app: AppContext) -> None:
    """Undo the last change (log, timer, status, note, import, start date)."""
    from zero2vllm.tracker import actions

    click.echo(run_action(actions.undo, app.store))


@click.command("note")
@click.argument("item")
@click.option("--text", "text", default=None,
              help="The note (otherwise: stdin when it is a pipe, else $EDITOR or a default editor).")
@click.option("--show", is_flag=True, help="Print the note instead of editing it.")
@pass_app
def note_cmd(app: AppContext, item: str, text: str | None, show: bool) -> None:
    """Write or show the note of ITEM (Markdown; e.g. your 1-page summary)."""
    from zero2vllm.tracker import actions

    plan = _plan(app)
    it = run_action(actions.find_item, plan, item)
    current = app.store.note(it.id)
    if show:
        click.echo(current or f"No note on {it.id}.")
        return
    if text is None and not sys.stdin.isatty():
        from zero2vllm.tracker.actions import MAX_NOTE_CHARS

        text = sys.stdin.read(MAX_NOTE_CHARS + 1)  # `z2v note ITEM < summary.md`
    elif text is None:
        # $VISUAL or $EDITOR, else the first of sensible-editor, vim, nano, vi (click's choice)
        try:
            text = click.edit(current or f"# {it.title}\n\n")
        except click.ClickException as exc:
            raise Z2VError(f"{exc.format_message()}; set $EDITOR, pipe the note in, or use --text") from None
        if text is None:
            click.echo("Note unchanged.")
            return
    click.echo(run_action(actions.save_note, app.store, plan, it.id, text, exact=True))


@click.command("history")
@click.option("--week", "week", type=int, default=None, help="Only entries on this week's items.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def history_cmd(app: AppContext, week: int | None, as_json: bool) -> None:
    """Time entries, newest last, with day totals."""
    from zero2vllm import ui
    from zero2vllm.tracker.durations import format_duration

    plan = _plan(app)
    ids = None
    if week is not None:
        w = plan.week(week)
        if w is None:
            raise Z2VError(f"there is no week {week}")
        ids = [i.id for i in w.items]
    entries = app.store.entries(item_ids=ids)
    if as_json:
        ui.echo_json([e.__dict__ for e in entries])
        return
    if not entries:
        click.echo("No time logged yet. `z2v log ITEM 30m` or `z2v start ITEM`.")
        return
    day = None
    for e in entries:
        if e.day != day:
            day = e.day
            total = sum(x.seconds for x in entries if x.day == day)
            click.echo(f"{day}  ({format_duration(total)})")
        note = f"  - {e.note}" if e.note else ""
        click.echo(f"  {format_duration(e.seconds):>7}  {e.item_id}  [{e.source}]{note}")


COMMANDS = {cmd.name: cmd for cmd in (status_cmd, week_cmd, next_cmd, start_cmd, stop_cmd, timer_group,
                                      log_cmd, done_cmd, skip_cmd, reopen_cmd, undo_cmd, note_cmd,
                                      history_cmd)}
