"""The own-test lab's criteria. A test proves something only if breaking the behaviour makes it
fail, so the check applies each relevant mutation of contrib.mutations (in modules the test
imports) to HEAD in a worktree and wants at least one of them to make a new test fail."""

from __future__ import annotations

from zero2vllm.labs import contribkit as labkit
from zero2vllm.contrib import mutations, testrun
from zero2vllm.contrib import repo as git
from zero2vllm.labs.framework import CheckFailed, criterion


@criterion("branch")
def branch(ctx):
    return labkit.find_branch(ctx)


@criterion("new test")
def new_test(ctx):
    return labkit.find_new_tests(ctx)


@criterion("passes on the branch")
def passes(ctx):
    b, tests = labkit.need_branch(ctx), labkit.need_tests(ctx)
    got = labkit.outcomes(labkit.run_tests(ctx, b, b.head, tests), tests)
    bad = [f"{t}: {o}" for t, o in got.items() if o != "passed"]
    if bad:
        raise CheckFailed("the new test does not pass on your branch: " + "; ".join(bad),
                          hint=f"run it yourself: pytest {' '.join(sorted(tests))}")
    ctx.state["passing"] = True
    return f"{len(got)} test(s) pass at {b.head[:10]}"


@criterion("fails on a mutation")
def kills_a_mutant(ctx):
    b, tests = labkit.need_branch(ctx), labkit.need_tests(ctx)
    if not ctx.state.get("passing"):
        raise CheckFailed("not run: needs 'passes on the branch'")
    sources = [git.show(b.repo, b.head, f) or "" for f in tests]
    with git.worktree(b.repo, b.head) as tree:
        candidates = mutations.applicable(tree)
    if not candidates:
        names = ", ".join(f"{m.symbol} in {m.file}" for m in mutations.CATALOGUE)
        raise CheckFailed("no mutation of the catalogue applies to this tree",
                          expected=f"one of: {names}", hint="is this a vLLM clone (V1 core)?")
    killed, survived = [], []
    for m, mutated in mutations.relevant(candidates, sources):
        got = labkit.outcomes(labkit.run_tests(ctx, b, b.head, tests, overlay={m.file: mutated}), tests)
        failing = [t for t, o in got.items() if o != "passed"]
        (killed if failing else survived).append((m, failing))
    ctx.metrics["mutations"] = {m.name: ("killed" if f else "survived") for m, f in killed + survived}
    if not killed:
        lines = "; ".join(f"{m.name} ({m.breaks})" for m, _ in survived)
        raise CheckFailed("your test still passes when the behaviour it covers is broken: " + lines,
                          hint="assert on the behaviour itself (order, hash, count), not only "
                               "that the call returns")
    return "; ".join(f"{m.name} ({m.breaks}) makes {', '.join(f)} fail" for m, f in killed)


@criterion("pre-commit")
def pre_commit(ctx):
    b = labkit.need_branch(ctx)
    with git.worktree(b.repo, b.head) as tree:
        if not (tree / ".pre-commit-config.yaml").is_file():
            raise CheckFailed("the clone has no .pre-commit-config.yaml", hint="is this vLLM?")
        code, output = testrun.run_pre_commit(tree, b.merge_base, b.head)
    if code != 0:
        raise CheckFailed(f"`pre-commit run --from-ref {b.merge_base[:10]} --to-ref HEAD` failed "
                          f"(exit {code})", got=output[-1200:],
                          hint="fix what the hooks report (many fix it themselves), commit, rerun")
    return f"pre-commit run --from-ref {b.merge_base[:10]} --to-ref HEAD passed"


@criterion("signed off")
def signed_off(ctx):
    return labkit.signed_off(ctx)
