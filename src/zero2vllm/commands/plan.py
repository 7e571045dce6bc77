"""`z2v plan ...`: show, import, export the plan text and set its start date."""

from __future__ import annotations

from pathlib import Path

import click

from zero2vllm.commands._app import AppContext, Z2VError, pass_app


@click.group("plan")
def plan_group() -> None:
    """Show, import and export the study plan, and set its start date."""


def _load_file(path: Path):
    from zero2vllm.tracker.plan import PlanError
    from zero2vllm.tracker.progress import read_plan_file

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
    from zero2vllm.tracker import progress
    from zero2vllm.ui import echo_json

    fmt = "json" if as_json else (fmt or "text")
    if file is not None:
        text, plan = _load_file(file)
        if fmt == "json":
            echo_json(plan.to_dict())
        else:
            click.echo(text, nl=False)
        return
    plan = progress.load_plan(app.store)
    if fmt == "json":
        echo_json(plan.to_dict())
    else:
        click.echo(progress.export_text(app.store, plan), nl=False)


@plan_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def plan_import(app: AppContext, file: Path) -> None:
    """Import a plan text; keeps progress of items whose ids survive, takes progress from annotations."""
    from zero2vllm.tracker import actions

    text, _ = _load_file(file)  # read and parsed here, so an error names the file and its line
    _, lines = actions.import_plan_text(app.store, text, str(file))
    click.echo(lines[0])
    for line in lines[1:]:
        click.echo(f"  {line}")


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

    from zero2vllm.tracker import progress

    plan = progress.load_plan(app.store)
    prog = progress.progress(app.store, plan)
    if fmt == "text":
        out = progress.export_text(app.store, plan)
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
    from zero2vllm.tracker import actions
    from zero2vllm.commands.track import run_action

    click.echo(run_action(actions.set_start_date, app.store, on))


def register(group: click.Group) -> None:
    group.add_command(plan_group)
