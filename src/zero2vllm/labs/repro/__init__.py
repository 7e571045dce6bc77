"""Week 7 lab: a regression test for the learner's issue that fails at the merge base and passes
at HEAD of their branch, run in throw-away worktrees of their vLLM clone."""

from zero2vllm.labs import Lab

LAB = Lab(
    id="repro",
    title="Regression test: fail first, then pass",
    week=7,
    plan_item="w7.regression-test-fails-before",
    summary="your branch's new test fails at the merge base and passes at HEAD",
    entry=None,  # nothing to import: the checks run git and pytest in your clone
    time_limit_s=900.0,
    check_inputs=("contrib",),  # what `z2v contrib` stored, passed in
)
