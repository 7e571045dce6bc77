"""The pr-merged lab's criteria: one per stage of a vLLM PR, read from GitHub's REST API
(zero2vllm.contrib.github). The PR is the first URL in PATH/pr-url.txt, else the one stored by
`z2v contrib init --pr URL`."""

from __future__ import annotations

from zero2vllm.contrib import github
from zero2vllm.contrib.github import now as utcnow
from zero2vllm.labs.framework import CheckFailed, criterion


def pr_url(path, stored: str | None = None) -> str | None:
    folder = path if path.is_dir() else path.parent
    file = folder / "pr-url.txt"
    if file.is_file():
        for line in file.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                return line
    return stored


def _pr(ctx) -> github.PRStatus:
    if "pr" not in ctx.state:
        raise CheckFailed("not run: needs 'PR found'")
    return ctx.state["pr"]


@criterion("PR found")
def found(ctx):
    url = pr_url(ctx.path, (ctx.inputs.get("contrib") or {}).get("pr_url"))
    if not url:
        raise CheckFailed("no PR URL", hint="write it in pr-url.txt here, or run "
                                            "`z2v contrib init CLONE --pr https://github.com/vllm-project/vllm/pull/N`")
    try:
        pr = github.follow(url)
    except github.GitHubError as exc:
        raise CheckFailed(str(exc)) from None
    ctx.state["pr"] = pr
    ctx.metrics.update(url=url, stage=pr.stage(), labels=pr.labels, checks=pr.checks)
    ping = pr.ping(utcnow())
    if ping:
        ctx.metrics["ping"] = ping
    return f"{pr.title!r} by {pr.author}: {pr.stage()}" + (f"\n{ping}" if ping else "")


@criterion("opened")
def opened(ctx):
    pr = _pr(ctx)
    if pr.state == "closed" and not pr.merged:
        raise CheckFailed("the PR was closed without merging",
                          hint="read the last comments: reopen it, or open a new one that answers them")
    if pr.draft:
        raise CheckFailed("the PR is still a draft", hint="click 'Ready for review' when it is")
    return f"opened {pr.created_at:%Y-%m-%d}"


@criterion("ready label")
def ready(ctx):
    pr = _pr(ctx)
    if not pr.ready and not pr.merged:
        labels = ", ".join(pr.labels) or "none"
        raise CheckFailed(f"no `ready` label yet (labels: {labels})",
                          hint="vLLM runs its full CI only after a maintainer adds `ready`, usually "
                               "once a reviewer is happy; answer the review first, then ask politely")
    return "labelled ready" if pr.ready else "merged (the label was removed)"


@criterion("CI green")
def ci(ctx):
    pr = _pr(ctx)
    failing = pr.failing
    if "DCO" in failing:
        raise CheckFailed("the DCO check failed: a commit lacks a Signed-off-by with its author's email",
                          hint="`git rebase --signoff <base>` then `git push --force-with-lease`")
    if failing:
        raise CheckFailed("failing checks: " + ", ".join(f"{n} ({c})" for n, c in sorted(failing.items())),
                          hint="open the check's log; rerun a flaky one, fix a real failure")
    if pr.pending:
        raise CheckFailed("checks still running: " + ", ".join(sorted(pr.pending)))
    if not pr.checks:
        raise CheckFailed("no checks ran on the PR's last commit",
                          hint="CI starts on a push; full CI needs the `ready` label")
    return f"{len(pr.checks)} check(s) green"


@criterion("review comments answered")
def answered(ctx):
    pr = _pr(ctx)
    if not pr.reviews and not pr.merged:
        raise CheckFailed("no review yet", hint=pr.ping(utcnow()) or "reviews take days; wait a week before a ping")
    if pr.unanswered:
        first = pr.unanswered[0]
        raise CheckFailed(f"{len(pr.unanswered)} review comment(s) with no reply from you, e.g. "
                          f"{first['user']} on {first['path']}: {first['body']!r}",
                          hint="reply to each (a change, or why not), then re-request review")
    return f"{len(pr.reviews)} review(s), every comment answered"


@criterion("merged")
def merged(ctx):
    pr = _pr(ctx)
    if not pr.merged:
        raise CheckFailed(f"not merged yet: {pr.stage()}")
    return "merged: welcome to vLLM's contributors"
