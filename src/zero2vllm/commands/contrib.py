"""`z2v contrib init|status|predict`: the learner's own vLLM clone and PR, for the labs of weeks
4-8 (code-map, trace-step, dev-setup, own-test, repro, pr-ready, pr-merged)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from zero2vllm.commands._app import Z2VError, pass_app

CONTRIB_LABS = ("code-map", "trace-step", "dev-setup", "own-test", "repro", "pr-ready", "pr-merged")


@click.group("contrib")
def contrib_group() -> None:
    """Your vLLM clone and PR: where they are, and where they stand (weeks 4-8)."""


@contrib_group.command("init")
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@click.option("--base", help="the branch PRs go into (default: upstream/main, origin/main or main)")
@click.option("--python", "python", type=click.Path(dir_okay=False, path_type=Path),
              help="the Python that runs the clone's tests (default: a venv in the clone, else z2v's)")
@click.option("--pr", "pr_url", help="your PR's URL, for `z2v check pr-merged`")
@pass_app
def contrib_init(app, path: Path, base: str | None, python: Path | None, pr_url: str | None) -> None:
    """Remember PATH as your vLLM clone (run again to change any setting)."""
    from zero2vllm.contrib import github
    from zero2vllm.contrib import repo as git
    from zero2vllm.tracker import contrib_settings as settings

    if not path.is_dir():
        raise Z2VError(f"{path} is not a directory; clone vLLM first: "
                       "git clone https://github.com/vllm-project/vllm.git")
    top = git.toplevel(path)
    if top is None:
        raise Z2VError(f"{path} is not a git work tree; give the folder `git clone` made")
    if base and git.rev(top, base) is None:
        raise Z2VError(f"{top} has no ref {base!r}; `git fetch` it first, or pick another --base")
    if python is not None and not python.exists():
        raise Z2VError(f"{python} does not exist; give the python of the venv vLLM is installed in")
    if pr_url:
        try:
            github.parse_pr_url(pr_url)
        except github.GitHubError as exc:
            raise Z2VError(str(exc)) from None
    if not (top / "vllm").is_dir():
        click.echo(f"note: {top} has no vllm/ package folder; is it a vLLM clone?")
    # absolute(), not resolve(): a venv's python is a symlink, and resolving it leaves the venv
    values = {"clone": str(top.resolve()), "base": base,
              "python": str(python.absolute()) if python else None, "pr_url": pr_url}
    store = app.store
    old = settings.get_all(store)
    # Only what was given changes; a new clone forgets the old clone's base and python.
    keep = {k: old.get(k) for k in ("base", "python", "pr_url") if old.get("clone") == values["clone"]}
    settings.put(store, **{k: (v if v is not None else keep.get(k)) for k, v in values.items()})
    click.echo(f"vLLM clone: {top.resolve()}")
    _echo_branch(top, settings.get(store, "base"))


def _echo_branch(top: Path, base: str | None) -> dict:
    from zero2vllm.contrib import repo as git

    try:
        b = git.branch(top, base)
    except git.RepoError as exc:
        click.echo(f"  branch: {exc}")
        return {}
    name = git.git(top, "rev-parse", "--abbrev-ref", "HEAD").strip()
    ahead = len(git.commits(b))
    click.echo(f"  branch: {name} at {b.head[:10]}, {ahead} commit(s) ahead of {b.base} "
               f"(merge base {b.merge_base[:10]})")
    return {"branch": name, "head": b.head, "base": b.base, "merge_base": b.merge_base, "ahead": ahead}


@contrib_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@pass_app
def contrib_status(app, as_json: bool) -> None:
    """The clone, its branch, the contribution labs' last checks, and where your PR stands."""
    from zero2vllm.contrib import github
    from zero2vllm.tracker import contrib_settings as settings
    from zero2vllm.tracker.store import utcnow

    store = app.store
    conf = settings.get_all(store)
    out: dict = {"settings": conf, "labs": {}}
    echo = (lambda *a, **k: None) if as_json else click.echo
    if not conf.get("clone"):
        echo("no vLLM clone yet: z2v contrib init PATH")
    else:
        echo(f"vLLM clone: {conf['clone']}")
        if not as_json:
            out["branch"] = _echo_branch(Path(conf["clone"]), conf.get("base"))
    for lab in CONTRIB_LABS:
        runs = store.lab_runs(lab, kind="check")
        last = runs[-1] if runs else None
        out["labs"][lab] = None if last is None else {"passed": last["passed"], "at": last["at"]}
        verdict = "-" if last is None else ("PASS " if last["passed"] else "FAIL ") + last["at"][:10]
        echo(f"  {lab:<11} {verdict}")
    if conf.get("pr_url"):
        try:
            pr = github.follow(conf["pr_url"])
        except github.GitHubError as exc:
            out["pr"] = {"url": conf["pr_url"], "error": str(exc)}
            echo(f"PR {conf['pr_url']}: {exc}")
        else:
            ping = pr.ping(utcnow())
            out["pr"] = {"url": pr.url, "stage": pr.stage(), "labels": pr.labels, "checks": pr.checks,
                         "unanswered": len(pr.unanswered), "ping": ping}
            echo(f"PR {pr.url}: {pr.stage()}")
            echo(f"  {pr.title}")
            if ping:
                echo(f"  {ping}")
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))


@contrib_group.command("predict")
@click.argument("lab_id", metavar="LAB")
@click.argument("name")
@click.argument("answer")
@pass_app
def contrib_predict(app, lab_id: str, name: str, answer: str) -> None:
    """Lock a prediction before you look: only its salted hash is kept until the lab reveals it."""
    from zero2vllm.contrib import predictions
    from zero2vllm.tracker import contrib_settings as settings

    if lab_id not in CONTRIB_LABS:
        raise Z2VError(f"predictions are for the contribution labs: {', '.join(CONTRIB_LABS)}")
    salt, digest = predictions.lock(answer)
    try:
        settings.lock_prediction(app.store, lab_id, name, salt, digest)
    except ValueError as exc:
        raise Z2VError(f"{exc}; predictions cannot be changed once locked") from None
    click.echo(f"locked {lab_id}/{name} (sha256 {digest[:12]}...); `z2v check {lab_id}` reveals it")


COMMANDS = {"contrib": contrib_group}
