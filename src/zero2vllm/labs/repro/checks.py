"""The repro lab's criteria: the branch adds a test, and that test fails on the merge base's
code and passes on HEAD's. Both sides run in throw-away worktrees; on the base side the
branch's test files are laid over the base's code, as a reviewer would run them."""

from __future__ import annotations

from zero2vllm.contrib import repo as git
from zero2vllm.contrib import testrun
from zero2vllm.labs.framework import CheckFailed, criterion

CASES = {  # (at merge base, at HEAD) -> what it means
    ("failed", "passed"): "fail→pass: reproduces the issue and the branch fixes it",
    ("passed", "passed"): "pass→pass: passes at the merge base too, so it does not reproduce the issue",
    ("failed", "failed"): "fail→fail: fails at HEAD too, so the branch does not fix it (or the test is broken)",
    ("passed", "failed"): "pass→fail: passes at the merge base and fails at HEAD, so the branch breaks it",
}


def _branch(ctx) -> git.Branch:
    if "branch" not in ctx.state:
        raise CheckFailed("not run: needs 'branch'")
    return ctx.state["branch"]


@criterion("branch")
def branch(ctx):
    try:
        clone = git.find_clone(ctx.path)
        b = git.branch(clone)
    except git.RepoError as exc:
        raise CheckFailed(str(exc)) from None
    if b.head == b.merge_base:
        raise CheckFailed(f"HEAD is the merge base with {b.base}: the branch has no commits",
                          hint="commit your test and fix on a branch, e.g. `git switch -c fix-1234`")
    ctx.state["branch"] = b
    ctx.metrics.update(clone=str(clone), base=b.base, merge_base=b.merge_base, head=b.head)
    return f"{clone} at {b.head[:10]}, merge base with {b.base} {b.merge_base[:10]}"


@criterion("regression test")
def regression_test(ctx):
    b = _branch(ctx)
    tests = git.new_tests(b)
    if not tests:
        changed = ", ".join(p for _, p in git.changed_files(b)[:5]) or "nothing"
        raise CheckFailed("the branch adds or changes no test function", got=f"changed: {changed}",
                          hint="add a test under tests/ (test_*.py) that shows the issue")
    ctx.state["tests"] = tests
    ctx.metrics["tests"] = [f"{f}::{n}" for f, names in tests.items() for n in names]
    return ", ".join(ctx.metrics["tests"])


def _run_side(b: git.Branch, sha: str, tests: dict[str, list[str]], overlay: dict[str, str] | None):
    python = testrun.clone_python(b.repo)
    with git.worktree(b.repo, sha, overlay=overlay) as tree:
        run = testrun.pytest(tree, sorted(tests), python=python)
    if run.timed_out:
        raise CheckFailed(f"the tests did not finish at {sha[:10]} within the time limit")
    if not run.outcomes:
        raise CheckFailed(f"pytest reported no tests at {sha[:10]} (exit code {run.returncode})",
                          got=run.output[-800:], hint="does the test file import at all?")
    return run


@criterion("fail first, then pass")
def fail_then_pass(ctx):
    b = _branch(ctx)
    tests = ctx.state.get("tests")
    if not tests:
        raise CheckFailed("not run: needs 'regression test'")
    overlay = {f: git.show(b.repo, b.head, f) or "" for f in tests}
    before = _run_side(b, b.merge_base, tests, overlay)
    after = _run_side(b, b.head, tests, None)
    table, good, bad = [], [], []
    for file, names in tests.items():
        for name in names:
            pair = (testrun.pick(before.outcomes, file, name) or "missing",
                    testrun.pick(after.outcomes, file, name) or "missing")
            meaning = CASES.get(pair, f"{pair[0]}→{pair[1]}: not run as a plain pass or fail")
            table.append({"test": f"{file}::{name}", "base": pair[0], "head": pair[1]})
            (good if pair == ("failed", "passed") else bad).append(f"{file}::{name}: {meaning}")
    ctx.metrics["cases"] = table
    if bad:
        raise CheckFailed("; ".join(bad),
                          hint="a regression test fails on the unfixed code and passes on the fix")
    return "; ".join(good)
