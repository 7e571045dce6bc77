"""`z2v lab list|init|run` and `z2v check LAB [PATH]`: labs that check the learner's own code.

Only click and the standard library at module level: the labs' checks run in a child process
(zero2vllm.labs.check) and torch is imported only by `z2v lab run`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from zero2vllm.commands._app import Z2VError, pass_app


def _lab_or_error(lab_id: str):
    from zero2vllm.labs import all_labs

    labs = all_labs()
    if lab_id not in labs:
        known = ", ".join(list(labs) + sorted(CHECK_SUBJECTS))
        raise Z2VError(f"no lab {lab_id!r}; choose one of: {known} (see `z2v lab list`)")
    return labs[lab_id]


def _load_plan(store):
    from zero2vllm.tracker import evidence

    return evidence.plan_or_none(store)


# -- z2v lab ------------------------------------------------------------------------------------
@click.group("lab")
def lab_group() -> None:
    """Hands-on labs: scaffold, check and run your own code (`z2v check LAB` checks it)."""


@lab_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="print one JSON list instead of a table")
@pass_app
def lab_list(app, as_json: bool) -> None:
    """Every lab with its plan item, status and last check."""
    from zero2vllm.tracker import evidence

    store = app.store
    plan = _load_plan(store)
    found = evidence.statuses(store, plan)
    if as_json:
        click.echo(json.dumps([s.as_json() for s in found], indent=2))
        return
    rows = []
    for st in found:
        last = st.last_check
        if last:
            ok = sum(1 for c in last["criteria"] if c.get("passed"))
            result = f"{'PASS' if last['passed'] else 'FAIL'} {ok}/{len(last['criteria'])} {last['at'][:16].replace('T', ' ')}"
        else:
            result = "-"
        if st.item is not None:
            item = st.item.id + (f" ({st.item_status})" if st.item_status != "todo" else "")
        elif st.unlinked:
            item = f"unlinked: your plan has no {st.lab.plan_item}"
        else:
            item = "-"
        rows.append((st.id, f"w{st.lab.week}", st.lab.title, st.state, result, item))
    if not rows:
        click.echo("no labs installed")
        return
    headers = ("lab", "week", "title", "status", "last check", "plan item")
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    click.echo(fmt.format(*headers).rstrip())
    for r in rows:
        click.echo(fmt.format(*r).rstrip())
    click.echo("\nstart one: z2v lab init LAB   check it: z2v check LAB")


@lab_group.command("init")
@click.argument("lab_id", metavar="LAB")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
def lab_init(lab_id: str, directory: Path | None) -> None:
    """Write LAB's scaffold into DIRECTORY (default ./LAB); existing files are never overwritten."""
    from zero2vllm.labs.workspace import default_dir, init_workspace

    lab = _lab_or_error(lab_id)
    dest = directory or default_dir(lab)
    if dest.exists() and not dest.is_dir():
        raise Z2VError(f"{dest} exists and is not a directory; pick another DIR")
    written, kept = init_workspace(lab, dest)
    for f in written:
        click.echo(f"  wrote {f}")
    for f in kept:
        click.echo(f"  kept  {f} (already there, not overwritten)")
    readme = dest / "README.md"
    click.echo(f"\n{lab.title}: read {readme}, fill in the TODOs, then run")
    click.echo(f"  z2v check {lab.id}" + (f" {dest}" if directory else ""))


@lab_group.command("run")
@click.argument("lab_id", metavar="LAB")
@click.option("--code", type=click.Path(exists=True, path_type=Path),
              help="your lab directory or file (default: the lab's reference solution)")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), help="training steps (default: the lab's own)")
@pass_app
def lab_run(app, lab_id: str, code: Path | None, device: str, steps: int | None) -> None:
    """Run LAB end to end (for `transformer`: train, evaluate, plot, sample)."""
    import importlib

    from zero2vllm.paths import data_dir

    lab = _lab_or_error(lab_id)
    if not lab.has_run:
        raise Z2VError(f"lab {lab.id!r} has nothing to run; `z2v check {lab.id}` checks it")
    runner = importlib.import_module(f"{lab.package}.run")
    out_dir = data_dir() / "labs" / lab.id
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        outcome = runner.run(code=code, device=device, steps=steps, out_dir=out_dir, echo=click.echo)
    except runner.RunError as exc:
        raise Z2VError(str(exc)) from None
    from zero2vllm.tracker import evidence
    from zero2vllm.labs.check import files_hash

    evidence.record(app.store, {
        "lab": lab.id, "kind": "run", "passed": outcome["passed"],
        "duration_s": outcome.get("duration_s"),
        "code_path": str(code.resolve()) if code else "reference",
        "files_hash": files_hash(code) if code else None,
        "metrics": outcome.get("metrics", {}),
        "artifacts": [str(a) for a in outcome.get("artifacts", [])],
    })


@lab_group.command("dev-check")
@click.argument("lab_id", metavar="[LAB]", required=False)
@click.option("--cases", "cases_dir", type=click.Path(file_okay=False, path_type=Path),
              help="the lab cases folder (default: tests/lab_cases of this source checkout)")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="cases checked at once (each in its own process)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of tables")
@click.option("--markdown", is_flag=True, help="print the tables for docs/labs.md")
@pass_app
def lab_dev_check(app, lab_id: str | None, cases_dir: Path | None, jobs: int, as_json: bool,
                  markdown: bool) -> None:
    """Check the labs' verdicts: the scaffold fails on its named criterion, the reference and
    every correct variant pass, every known mistake fails on its named criterion. Exit 1 on
    any deviation."""
    from zero2vllm.tracker import evidence
    from zero2vllm.labs import all_labs
    from zero2vllm.labs import devcheck as D

    folder = cases_dir or D.default_cases_dir()
    if not folder.is_dir():
        raise Z2VError(f"no lab cases at {folder}: dev-check needs a source checkout of zero2vllm "
                       "(tests/lab_cases), or --cases DIR")
    labs = [_lab_or_error(lab_id)] if lab_id else list(all_labs().values())
    if lab_id and not (folder / lab_id).is_dir():
        raise Z2VError(f"lab {lab_id!r} has no cases in {folder / lab_id}")
    report, md, deviations = [], [], 0
    for lab in labs:
        if not (folder / lab.id).is_dir():
            deviations += 1
            report.append({"lab": lab.id, "error": f"no cases in {folder / lab.id}"})
            md += [f"#### `{lab.id}`", "", f"No cases yet (tests/lab_cases/{lab.id}): a deviation.", ""]
            if not (as_json or markdown):
                click.echo(f"{lab.id}: no cases in {folder / lab.id} (a deviation)\n")
            continue
        if not (as_json or markdown):
            click.echo(f"{lab.id}: checking its cases ...")
        def progress(row) -> None:  # long runs (minutes for a neural lab) show each row as it ends
            click.echo(f"  {row.case.label}: {row.verdict} ({row.seconds:.1f} s)")

        try:
            rows = D.dev_check(lab, folder / lab.id, jobs=jobs,
                               inputs=evidence.check_inputs(app.store, lab),
                               on_row=None if (as_json or markdown) else progress)
        except D.DevCheckError as exc:
            raise Z2VError(str(exc)) from None
        t = D.tally(rows)
        deviations += t["deviations"]
        report.append({"lab": lab.id, **t, "rows": [r.as_json() for r in rows]})
        md += D.markdown(lab, rows)
        if not (as_json or markdown):
            for line in D.table(rows):
                click.echo("  " + line)
            click.echo(f"  {t['caught']}/{t['mistakes']} mistakes caught by the right criterion, "
                       f"{t['caught_by_another']} by another, {t['missed']} missed; "
                       f"{t['deviations']} deviation(s)\n")
    if as_json:
        click.echo(json.dumps({"passed": deviations == 0, "labs": report}, indent=2))
    elif markdown:
        click.echo("\n".join(md).rstrip())
    else:
        click.echo("dev-check " + ("passed" if deviations == 0 else f"FAILED: {deviations} deviation(s)"))
    if deviations:
        raise SystemExit(1)


# -- z2v check ----------------------------------------------------------------------------------
# Subjects other than labs: name -> (module, command). A static table, so `z2v check` never
# depends on which modules happen to have been imported.
CHECK_SUBJECTS = {"summary": ("zero2vllm.commands.summary", "check_summary")}


class CheckGroup(click.Group):
    """`z2v check LAB ...` for labs; the subjects in CHECK_SUBJECTS (`z2v check summary ...`)
    are ordinary subcommands, dispatched by their first word."""

    def list_commands(self, ctx):
        return sorted(CHECK_SUBJECTS)

    def get_command(self, ctx, name):
        if name not in CHECK_SUBJECTS:
            return None
        import importlib

        module, attr = CHECK_SUBJECTS[name]
        return getattr(importlib.import_module(module), attr)

    def resolve_command(self, ctx, args):
        handler = self.get_command(ctx, args[0]) if args else None
        if handler is not None:
            return args[0], handler, args[1:]
        return "LAB", check_lab, args

    def format_usage(self, ctx, formatter):
        formatter.write_usage(ctx.command_path, "LAB [PATH] [--json] | SUBJECT ARGS...")

    def format_help_text(self, ctx, formatter):
        from zero2vllm.labs import all_labs

        super().format_help_text(ctx, formatter)
        with formatter.section("Labs"):
            formatter.write_dl([(lab.id, lab.title) for lab in all_labs().values()])


@click.group("check", cls=CheckGroup, invoke_without_command=False,
             context_settings={"ignore_unknown_options": True})
def check_group() -> None:
    """Check your code for a lab: every criterion with pass/fail and, on failure, why.

    z2v check LAB [PATH] [--json]: exit 0 only when every criterion passes; a passing run is
    kept as evidence and marks the lab's plan deliverable done.
    """


class _LabCheckCommand(click.Command):
    def format_usage(self, ctx, formatter):
        formatter.write_usage(ctx.parent.command_path if ctx.parent else "z2v check",
                              "LAB [PATH] [OPTIONS]")


@click.command("check", cls=_LabCheckCommand)
@click.argument("lab_id", metavar="LAB")
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of text")
@click.option("--reference", is_flag=True, help="check the lab's reference solution (not recorded)")
@click.option("--timeout", type=click.FloatRange(min=1), help="seconds for the whole check")
@click.option("--fast", is_flag=True, hidden=True, help="shorter checks for the tool's own tests (never recorded)")
@click.option("--only", hidden=True, help="comma-separated criteria (never recorded)")
@pass_app
def check_lab(app, lab_id: str, path: Path | None, as_json: bool, reference: bool,
              timeout: float | None, fast: bool, only: str | None) -> None:
    """Check PATH (default ./LAB, else .) against LAB's criteria."""
    from zero2vllm.labs.check import run_check
    from zero2vllm.labs.workspace import resolve_check_path

    lab = _lab_or_error(lab_id)
    if reference and path is not None:
        raise Z2VError("give either PATH or --reference, not both")
    target = lab.reference_dir if reference else resolve_check_path(lab, path)
    partial = bool(fast or only)

    shown: set[str] = set()
    seen_causes: set[tuple] = set()

    def show(event: dict) -> None:
        if event.get("event") == "sandbox":
            click.echo(f"isolation: {event['isolation']}")
        elif event.get("event") == "plan":
            click.echo(f"checking {target} against {lab.id} ({len(event['criteria'])} criteria)")
        elif event.get("event") == "result":
            shown.add(event["name"])
            _echo_criterion(event, event.get("seconds"), seen_causes)

    result = run_check(
        lab, target, timeout_s=timeout, fast=fast,
        only=[n.strip() for n in only.split(",")] if only else None,
        on_event=None if as_json else show, inputs=_check_inputs(app.store, lab),
        db_path=app.db_path,  # the store to hide from the check process
    )
    if not as_json:  # criteria the child never reported (time limit, crash) are shown now
        for crit in result.criteria:
            if crit["name"] not in shown:
                _echo_criterion(crit, None, seen_causes)
        from zero2vllm.labs.framework import cause_message, shared_causes

        for cause, names in shared_causes(result.criteria):
            click.echo("\n" + click.style(cause_message(cause, names), bold=True))

    revealed = [] if result.refused else _reveal(app.store, lab, result.metrics.get("revealed"))
    marked = None
    if not reference and not partial:
        from zero2vllm.tracker import evidence

        marked = evidence.record(app.store, {
            "lab": lab.id, "kind": "check", "passed": result.passed,
            "duration_s": result.duration_s, "code_path": result.path,
            "files_hash": result.files_hash, "criteria": result.criteria,
            "metrics": result.metrics, "refused": result.refused,
            "isolation": result.isolation,
        }).closed
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        ok = sum(1 for c in result.criteria if c["passed"])
        verdict = click.style("PASSED", fg="green", bold=True) if result.passed else \
            click.style("FAILED", fg="red", bold=True)
        click.echo(f"\n{verdict}: {ok}/{len(result.criteria)} criteria in {result.duration_s:.1f} s")
        if result.refused:
            recorded = "" if reference or partial else ", and this run is recorded as refused"
            click.echo(click.style("REFUSED", fg="red", bold=True) + f": {result.refused}; "
                       f"the check's results were not believed{recorded}")
        if revealed:
            click.echo(f"revealed {len(revealed)} locked prediction(s): {', '.join(revealed)}")
        if marked:
            click.echo(f"marked {marked} done")
        if reference:
            click.echo("(the reference solution: not recorded)")
        elif partial:
            click.echo("(a partial check: not recorded)")
    if not result.passed:
        raise SystemExit(1)


_MARKS = {"pass": ("PASS", "green"), "warn": ("WARN", "yellow"), "fail": ("FAIL", "red"),
          "not run": ("FAIL", "red")}


def _echo_criterion(crit: dict, seconds: float | None, seen_causes: set | None = None) -> None:
    status = crit.get("status") or ("pass" if crit["passed"] else "fail")
    word, colour = _MARKS.get(status, _MARKS["fail"])
    took = f"  ({seconds:.1f} s)" if seconds else ""
    detail = str(crit.get("detail") or "")
    if status == "not run":  # briefly: the reason is the criterion it needs
        click.echo(f"  {click.style(word, fg=colour)}  {crit['name']}  ({detail})")
        return
    cause = crit.get("cause")
    key = (cause["error"], cause["file"], cause["line"]) if cause else None
    if key is not None and seen_causes is not None and key in seen_causes:
        click.echo(f"  {click.style(word, fg=colour)}  {crit['name']}{took}  (the same "
                   f"{cause['error']} in `{cause['func']}` as above)")
        return
    if key is not None and seen_causes is not None:
        seen_causes.add(key)
    click.echo(f"  {click.style(word, fg=colour)}  {crit['name']}{took}")
    if detail and (status != "pass" or detail != "ok"):
        for line in detail.splitlines():
            click.echo(f"        {line}")


def _check_inputs(store, lab) -> dict:
    """What LAB's checks need from the store, read here and passed in (the check process never
    opens the store, so `--db` is honoured)."""
    from zero2vllm.tracker import evidence

    return evidence.check_inputs(store, lab)


def _reveal(store, lab, revealed: dict | None) -> list[str]:
    """Store the locked predictions the check found right (metrics["revealed"]: name -> answer),
    each tested again against its hash here, so only a true answer is ever stored. Returns the
    names newly revealed."""
    if not revealed or "predictions" not in lab.check_inputs:
        return []
    from zero2vllm.contrib import predictions
    from zero2vllm.tracker import contrib_settings

    done = []
    for name, answer in revealed.items():
        row = contrib_settings.locked(store, lab.id, str(name))
        if row is not None and isinstance(answer, str) and predictions.matches(row, answer) \
                and contrib_settings.mark_revealed(store, lab.id, name, answer):
            done.append(name)
    return done


COMMANDS = {"lab": lab_group, "check": check_group}
