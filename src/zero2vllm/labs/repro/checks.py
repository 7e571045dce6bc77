"""The repro lab's criteria: the branch adds a test, and that test fails on the merge base's
code and passes on HEAD's. Both sides run in throw-away worktrees; on the base side the
branch's test files are laid over the base's code, as a reviewer would run them."""

from __future__ import annotations

from zero2vllm.labs import contribkit as labkit
from zero2vllm.contrib import repo as git
from zero2vllm.labs.framework import CheckFailed, criterion

CASES = {  # (at merge base, at HEAD) -> what it means
    ("failed", "passed"): "fail→pass: reproduces the issue and the branch fixes it",
    ("passed", "passed"): "pass→pass: passes at the merge base too, so it does not reproduce the issue",
    ("failed", "failed"): "fail→fail: fails at HEAD too, so the branch does not fix it (or the test is broken)",
    ("passed", "failed"): "pass→fail: passes at the merge base and fails at HEAD, so the branch breaks it",
}


@criterion("branch")
def branch(ctx):
    return labkit.find_branch(ctx)


@criterion("regression test")
def regression_test(ctx):
    return labkit.find_new_tests(ctx)


@criterion("fail first, then pass")
def fail_then_pass(ctx):
    b = labkit.need_branch(ctx)
    tests = labkit.need_tests(ctx)
    overlay = {f: git.show(b.repo, b.head, f) or "" for f in tests}
    before = labkit.outcomes(labkit.run_tests(ctx, b, b.merge_base, tests, overlay=overlay), tests)
    after = labkit.outcomes(labkit.run_tests(ctx, b, b.head, tests), tests)
    table, good, bad = [], [], []
    for test in before:
        pair = (before[test], after[test])
        meaning = CASES.get(pair, f"{pair[0]}→{pair[1]}: not run as a plain pass or fail")
        table.append({"test": test, "base": pair[0], "head": pair[1]})
        (good if pair == ("failed", "passed") else bad).append(f"{test}: {meaning}")
    ctx.metrics["cases"] = table
    if bad:
        raise CheckFailed("; ".join(bad),
                          hint="a regression test fails on the unfixed code and passes on the fix")
    return "; ".join(good)
