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
    from zero2vllm.labs import all_labs, check_handlers

    labs = all_labs()
    if lab_id not in labs:
        extra = sorted(check_handlers())
        known = ", ".join(list(labs) + extra)
        raise Z2VError(f"no lab {lab_id!r}; choose one of: {known} (see `z2v lab list`)")
    return labs[lab_id]


def _plan_items(store) -> list | None:
    """The imported plan's items, or None when there is no plan (or no tracker yet)."""
    try:
        from zero2vllm.tracker.progress import load_plan
    except ImportError:
        return None
    try:
        plan = load_plan(store)
    except Exception:  # a broken plan must not stop a lab check from being recorded
        return None
    if plan is None:
        return None
    items = getattr(plan, "items", plan)
    if callable(items):
        items = items()
    try:
        return list(items)
    except TypeError:
        return None


def _plan_item(store, lab):
    from zero2vllm.labs import find_plan_item

    items = _plan_items(store)
    return find_plan_item(items, lab) if items else None


# -- z2v lab ------------------------------------------------------------------------------------
@click.group("lab")
def lab_group() -> None:
    """Hands-on labs: scaffold, check and run your own code (`z2v check LAB` checks it)."""


@lab_group.command("list")
@pass_app
def lab_list(app) -> None:
    """Every lab with its plan item, status and last check."""
    from zero2vllm.labs import all_labs

    store = app.store
    items = _plan_items(store)
    from zero2vllm.labs import find_plan_item

    rows = []
    for lab in all_labs().values():
        runs = store.lab_runs(lab.id, kind="check")
        last = runs[-1] if runs else None
        item = find_plan_item(items, lab) if items else None
        state = store.state(item.id) if item is not None else None
        if any(r["passed"] for r in runs):
            status = "passed"
        elif runs:
            status = "failing"
        else:
            status = "not started"
        if state is not None and state.status == "done" and status != "passed":
            status = "done (plan)"
        if last:
            ok = sum(1 for c in last["criteria"] if c.get("passed"))
            result = f"{'PASS' if last['passed'] else 'FAIL'} {ok}/{len(last['criteria'])} {last['at'][:16].replace('T', ' ')}"
        else:
            result = "-"
        rows.append((lab.id, f"w{lab.week}", lab.title, status, result,
                     item.id if item is not None else ""))
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
    from zero2vllm.labs.check import files_hash

    app.store.add_lab_run(
        lab.id, outcome["passed"], kind="run", duration_s=outcome.get("duration_s"),
        code_path=str(code.resolve()) if code else "reference",
        files_hash=files_hash(code) if code else None,
        metrics=outcome.get("metrics", {}), artifacts=[str(a) for a in outcome.get("artifacts", [])],
    )


# -- z2v check ----------------------------------------------------------------------------------
class CheckGroup(click.Group):
    """`z2v check LAB ...` for labs; other subjects (`z2v check summary ...`) are registered
    with zero2vllm.labs.register_check and dispatched by their first word."""

    def list_commands(self, ctx):
        from zero2vllm.labs import check_handlers

        return sorted(check_handlers())

    def get_command(self, ctx, name):
        from zero2vllm.labs import check_handlers

        return check_handlers().get(name)

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

    def show(event: dict) -> None:
        if event.get("event") == "plan":
            click.echo(f"checking {target} against {lab.id} ({len(event['criteria'])} criteria)")
        elif event.get("event") == "result":
            shown.add(event["name"])
            _echo_criterion(event, event.get("seconds"))

    result = run_check(
        lab, target, timeout_s=timeout, fast=fast,
        only=[n.strip() for n in only.split(",")] if only else None,
        on_event=None if as_json else show,
    )
    if not as_json:  # criteria the child never reported (time limit, crash) are shown now
        for crit in result.criteria:
            if crit["name"] not in shown:
                _echo_criterion(crit, None)

    marked = None
    if not reference and not partial:
        store = app.store
        store.add_lab_run(
            lab.id, result.passed, kind="check", duration_s=result.duration_s,
            code_path=result.path, files_hash=result.files_hash, criteria=result.criteria,
            metrics=result.metrics,
        )
        if result.passed:
            marked = _mark_done(store, lab, result)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        ok = sum(1 for c in result.criteria if c["passed"])
        verdict = click.style("PASSED", fg="green", bold=True) if result.passed else \
            click.style("FAILED", fg="red", bold=True)
        click.echo(f"\n{verdict}: {ok}/{len(result.criteria)} criteria in {result.duration_s:.1f} s")
        if marked:
            click.echo(f"marked {marked} done")
        if reference:
            click.echo("(the reference solution: not recorded)")
        elif partial:
            click.echo("(a partial check: not recorded)")
    if not result.passed:
        raise SystemExit(1)


def _echo_criterion(crit: dict, seconds: float | None) -> None:
    mark = click.style("PASS", fg="green") if crit["passed"] else click.style("FAIL", fg="red")
    took = f"  ({seconds:.1f} s)" if seconds else ""
    click.echo(f"  {mark}  {crit['name']}{took}")
    detail = str(crit.get("detail") or "")
    if detail and (not crit["passed"] or detail != "ok"):
        for line in detail.splitlines():
            click.echo(f"        {line}")


def _mark_done(store, lab, result) -> str | None:
    item = _plan_item(store, lab)
    if item is None:
        return None
    state = store.state(item.id)
    if state is not None and state.status == "done":
        return None
    store.change_status(item.id, "done", f"lab {lab.id} passed ({len(result.criteria)} criteria)")
    return item.id


def register(group: click.Group) -> None:
    group.add_command(lab_group)
    group.add_command(check_group)
