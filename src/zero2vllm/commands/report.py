"""`z2v report [--week N] [--format md|html|png] [-o FILE]`: the weekly report as one file."""

from __future__ import annotations

from pathlib import Path

import click

from zero2vllm.commands._app import AppContext, Z2VError, pass_app


@click.command("report")
@click.option("--week", type=int, default=None, help="Plan week (default: this week).")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "png", "json"]), default=None,
              help="md or html (self-contained, charts embedded), png (one page), json (the numbers). "
                   "Default: from -o's extension, else md.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default=None,
              help="File to write ('-': stdout; default: $ZERO2VLLM_HOME/reports/week-N.FORMAT).")
@pass_app
def report_cmd(app: AppContext, week: int | None, fmt: str | None, output: Path | None) -> None:
    """A weekly report: hours against your commitment, items done and open, lab results with
    their numbers, concepts due and their retention (FSRS), and charts."""
    from zero2vllm.tracker import report
    from zero2vllm.tracker import progress
    from zero2vllm.paths import data_dir
    from zero2vllm.tracker.plan import PlanError

    if fmt is None:
        suffix = output.suffix.lower().lstrip(".") if output and str(output) != "-" else ""
        fmt = {"markdown": "md", "htm": "html"}.get(suffix, suffix) if suffix in \
            ("md", "markdown", "html", "htm", "png", "json") else "md"
    if str(output) == "-" and fmt == "png":
        raise Z2VError("a PNG cannot go to stdout; give -o FILE.png")
    store = app.store
    try:
        plan = progress.load_plan(store)
    except PlanError as exc:
        raise Z2VError(f"the stored plan cannot be read: {exc}") from None
    now = progress.now()
    if week is None:
        idx = progress.week_index(plan, progress.start_date(store), progress.local_day(now))
        week = plan.weeks[min(max(idx, 1), len(plan.weeks)) - 1].number
    try:
        data = report.build(store, plan, week, now)
    except report.ReportError as exc:
        raise Z2VError(str(exc)) from None
    blob = report.render(data, fmt)
    if str(output) == "-":
        click.echo(blob.decode(), nl=False)
        return
    path = output or data_dir() / "reports" / f"week-{week}.{fmt}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
    except OSError as exc:
        raise Z2VError(f"cannot write {path}: {exc.strerror}") from None
    h = data["hours"]
    click.echo(f"Week {week}: {h['logged']:.1f} h logged, {data['items_done']}/{len(data['items'])} items done, "
               f"{len(data['labs'])} lab run(s), {data['review']['due_now']} card(s) due.")
    click.echo(f"Wrote {path} ({len(blob) / 1024:.0f} KiB).")


def register(group: click.Group) -> None:
    group.add_command(report_cmd)
