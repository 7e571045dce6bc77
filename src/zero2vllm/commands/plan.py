"""`z2v plan ...`: show, import, export the plan text and set its start date."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from zero2vllm.cli import AppContext, Z2VError, pass_app


@click.group("plan")
def plan_group() -> None:
    """Show, import and export the study plan, and set its start date."""


def _load_file(path: Path):
    from zero2vllm.plan import PlanError
    from zero2vllm.tracker import read_plan_file

    try:
        return read_plan_file(path)
    except PlanError as exc:
        raise Z2VError(f"{path}: {exc}") from None


@plan_group.command("show")
@click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path),
              help="Parse this plan file instead of the stored plan; stores nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the parsed plan as JSON.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default=None,
              help="text: the plan text with current progress; json: the parsed plan.")
@pass_app
def plan_show(app: AppContext, file: Path | None, as_json: bool, fmt: str | None) -> None:
    """Show the plan (stored, or parsed from --file) as text or JSON."""
    from zero2vllm import tracker
    from zero2vllm.ui import echo_json

    fmt = "json" if as_json else (fmt or "text")
    if file is not None:
        text, plan = _load_file(file)
        if fmt == "json":
            echo_json(plan.to_dict())
        else:
            click.echo(text, nl=False)
        return
    plan = tracker.load_plan(app.store)
    if fmt == "json":
        echo_json(plan.to_dict())
    else:
        click.echo(tracker.export_text(app.store, plan), nl=False)


@plan_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def plan_import(app: AppContext, file: Path) -> None:
    """Import a plan text; keeps progress of items whose ids survive, takes progress from annotations."""
    from zero2vllm import tracker
    from zero2vllm.durations import format_duration

    text, _ = _load_file(file)
    report = tracker.import_plan(app.store, text, str(file))
    plan = report.plan
    drafts = sum(w.draft for w in plan.weeks)
    click.echo(f"Imported {plan.title!r}: {len(plan.weeks)} weeks ({drafts} draft), {report.items} items.")
    for item_id, seconds in report.logged:
        click.echo(f"  logged {format_duration(seconds)} on {item_id} (from its annotation)")
    for item_id, status in report.statuses:
        click.echo(f"  {item_id}: {status.replace('_', ' ')}")
    if report.kept:
        click.echo(f"  kept progress on {len(report.kept)} items")
    if report.orphaned:
        click.echo(f"  progress kept in the store for {len(report.orphaned)} items no longer in the plan: "
                   + ", ".join(report.orphaned))
    if plan.announced_weeks and plan.announced_weeks > len(plan.weeks):
        click.echo(f"  note: the title announces {plan.announced_weeks} weeks; the text has {len(plan.weeks)}")


@plan_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text",
              help="text: your plan with progress written back as annotations.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
@pass_app
def plan_export(app: AppContext, fmt: str, output: Path | None) -> None:
    """Export the plan with current progress (text, JSON or CSV)."""
    import csv
    import io
    import json

    from zero2vllm import tracker

    plan = tracker.load_plan(app.store)
    prog = tracker.progress(app.store, plan)
    if fmt == "text":
        out = tracker.export_text(app.store, plan)
    elif fmt == "json":
        data = plan.to_dict()
        data["progress"] = {k: v.__dict__ for k, v in prog.items()}
        out = json.dumps(data, indent=2) + "\n"
    else:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["id", "week", "kind", "title", "url", "minutes", "draft", "status", "logged_minutes"])
        for i in plan.items():
            p = prog[i.id]
            w.writerow([i.id, i.week, i.kind, i.title, i.url or "", i.minutes or "", int(i.draft),
                        p.status, round(p.seconds / 60)])
        out = buf.getvalue()
    if output:
        output.write_text(out, encoding="utf-8")
        click.echo(f"Wrote {output}")
    else:
        click.echo(out, nl=False)


@plan_group.command("start")
@click.option("--on", "on", default=None, help="The Monday of week 1 (YYYY-MM-DD; default: this week's Monday).")
@pass_app
def plan_start(app: AppContext, on: str | None) -> None:
    """Set the date the plan starts (the Monday of week 1)."""
    from zero2vllm import tracker

    tracker.load_plan(app.store)
    if on is None:
        day = tracker.monday_of(tracker.local_day(tracker.now()))
    else:
        try:
            day = date.fromisoformat(on)
        except ValueError:
            raise Z2VError(f"--on {on!r} is not a date; write it as YYYY-MM-DD") from None
    note = "" if day.weekday() == 0 else f" (a {day:%A}; weeks will run {day:%A} to {day:%A} + 6 days)"
    app.store.set_start_date(day.isoformat(), f"plan start on {day}")
    click.echo(f"Week 1 starts on {day.isoformat()}{note}.")


def register(group: click.Group) -> None:
    group.add_command(plan_group)
