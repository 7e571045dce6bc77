"""Criteria bodies the contribution labs share: find the branch, find its new tests, run them
in a worktree. Each raises CheckFailed with the one thing to do. What `z2v contrib init` stored
(clone, base, python, pr_url) arrives in ctx.inputs["contrib"] (Lab.check_inputs)."""

from __future__ import annotations

from zero2vllm.contrib import repo as git
from zero2vllm.contrib import testrun
from zero2vllm.labs.framework import CheckFailed


def setting(ctx, key: str) -> str | None:
    """One setting of `z2v contrib init` (clone, base, python, pr_url), as the parent passed it."""
    return (ctx.inputs.get("contrib") or {}).get(key)


def find_branch(ctx) -> str:
    """The 'branch' criterion: the clone, its base, and at least one commit on the branch."""
    try:
        clone = git.find_clone(ctx.path, setting(ctx, "clone"))
        b = git.branch(clone, setting(ctx, "base"))
    except git.RepoError as exc:
        raise CheckFailed(str(exc)) from None
    if b.head == b.merge_base:
        raise CheckFailed(f"HEAD is the merge base with {b.base}: the branch has no commits",
                          hint="commit your work on a branch, e.g. `git switch -c fix-1234`")
    ctx.state["branch"] = b
    ctx.metrics.update(clone=str(clone), base=b.base, merge_base=b.merge_base, head=b.head)
    return f"{clone} at {b.head[:10]}, merge base with {b.base} {b.merge_base[:10]}"


def need_branch(ctx) -> git.Branch:
    if "branch" not in ctx.state:
        raise CheckFailed("not run: needs 'branch'")
    return ctx.state["branch"]


def find_new_tests(ctx) -> str:
    b = need_branch(ctx)
    tests = git.new_tests(b)
    if not tests:
        changed = ", ".join(p for _, p in git.changed_files(b)[:5]) or "nothing"
        raise CheckFailed("the branch adds or changes no test function", got=f"changed: {changed}",
                          hint="add a test function under tests/ (in a test_*.py file)")
    ctx.state["tests"] = tests
    ctx.metrics["tests"] = [f"{f}::{n}" for f, names in tests.items() for n in names]
    return ", ".join(ctx.metrics["tests"])


def need_tests(ctx) -> dict[str, list[str]]:
    if not ctx.state.get("tests"):
        raise CheckFailed("not run: needs a new test (see above)")
    return ctx.state["tests"]


def run_tests(ctx, b: git.Branch, sha: str, tests: dict[str, list[str]], *,
              overlay: dict[str, str] | None = None) -> testrun.TestRun:
    """The test files of TESTS at SHA (with OVERLAY laid over), in a throw-away worktree."""
    python = testrun.clone_python(b.repo, setting(ctx, "python"))
    with git.worktree(b.repo, sha, overlay=overlay) as tree:
        run = testrun.pytest(tree, sorted(tests), python=python)
    if run.timed_out:
        raise CheckFailed(f"the tests did not finish at {sha[:10]} within the time limit")
    if not run.outcomes:
        raise CheckFailed(f"pytest reported no tests at {sha[:10]} (exit code {run.returncode})",
                          got=run.output[-800:], hint="does the test file import at all?")
    return run


def outcomes(run: testrun.TestRun, tests: dict[str, list[str]]) -> dict[str, str]:
    """{"file::name": passed | failed | skipped | missing} for the branch's new tests."""
    return {f"{f}::{n}": testrun.pick(run.outcomes, f, n) or "missing"
            for f, names in tests.items() for n in names}


def signed_off(ctx) -> str:
    """Every commit on the branch has a Signed-off-by with its author's email (vLLM's DCO)."""
    b = need_branch(ctx)
    commits = git.commits(b)
    problems = testrun.unsigned(commits)
    if problems:
        raise CheckFailed("commits without a DCO sign-off: " + "; ".join(problems),
                          hint=f"`git rebase --signoff {b.merge_base[:10]}` signs them all off "
                               "(then force-push); `git commit -s` signs new ones")
    return f"{len(commits)} commit(s), each signed off by its author"
