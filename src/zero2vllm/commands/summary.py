"""`z2v check summary FILE --week N`: feedback on a written summary; a pass records it.

An ordinary subcommand of `z2v check` (listed in commands/labs.py's CHECK_SUBJECTS). The checks
and their method are in zero2vllm.tracker.summary; the run is recorded through zero2vllm.tracker.evidence.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import click

from zero2vllm.commands._app import AppContext, Z2VError, pass_app


@click.command("summary")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--week", type=int, default=None, help="The plan week it summarises (default: this week).")
@click.option("--item", "item_ref", default=None,
              help="The plan item to record it on (default: the week's Output item about a summary).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def check_summary(app: AppContext, file: Path, week: int | None, item_ref: str | None, as_json: bool) -> None:
    """Check a summary FILE (text or Markdown; - reads stdin) of plan week N: length (one page,
    about 250-700 words), which key concepts it covers, and passages copied from the plan.
    A pass stores it as the note of the week's Output item and marks that item done."""
    from dataclasses import asdict

    from zero2vllm.tracker import summary
    from zero2vllm.tracker import progress
    from zero2vllm.tracker.plan import PlanError

    try:
        data = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        raise Z2VError(f"cannot read {file}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Z2VError(f"{file} is not UTF-8 text; save the summary as UTF-8") from None
    if not text.strip():
        raise Z2VError(f"{file} is empty; write your summary in it first")
    store = app.store
    try:
        plan = progress.load_plan(store)
    except PlanError as exc:
        raise Z2VError(f"the stored plan cannot be read: {exc}") from None
    if week is None:
        idx = progress.week_index(plan, progress.start_date(store), progress.local_day(progress.now()))
        week = plan.weeks[min(max(idx, 1), len(plan.weeks)) - 1].number
    wk = plan.week(week)
    if wk is None:
        have = ", ".join(str(w.number) for w in plan.weeks)
        raise Z2VError(f"there is no week {week}; the plan has weeks {have}")
    if item_ref:
        try:
            item = progress.resolve(plan, item_ref)
        except progress.RefError as exc:
            raise Z2VError(str(exc)) from None
    else:
        item = summary.output_item(wk)

    result = summary.check_summary(text, plan, week)
    name = "-" if str(file) == "-" else str(file.resolve())
    from zero2vllm.tracker import actions
    from zero2vllm.tracker import evidence

    evidence.record(store, {
        "lab": "summary", "kind": "summary", "passed": result.passed, "code_path": name,
        "files_hash": hashlib.sha256(data).hexdigest(), "criteria": result.criteria(),
        "metrics": result.metrics(),
    })
    recorded = None
    if result.passed and item is not None:
        actions.save_note(store, plan, item.id, text, exact=True)
        evidence.close_item(store, plan, item.id)
        recorded = item.id
    if as_json:
        out = asdict(result)
        out.update(passed=result.passed, covered=result.covered,
                   copied_fraction=result.copied_fraction, recorded_on=recorded)
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(summary.format_report(result, item if recorded else None))
        if result.passed and item is None:
            click.echo(f"(week {week} has no Output item for a summary; give one with --item ITEM to record it)")
    if not result.passed:
        raise SystemExit(1)


def register(group: click.Group) -> None:
    """Nothing at the top level: `z2v check` attaches this module's command (CHECK_SUBJECTS)."""
