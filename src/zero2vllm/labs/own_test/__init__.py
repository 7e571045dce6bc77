"""Week 6 lab: the learner's branch adds a test that passes, and fails when the lab breaks the
behaviour it tests (a mutation from a small catalogue); pre-commit passes; commits signed off."""

from zero2vllm.labs import Lab

LAB = Lab(
    id="own-test",
    title="Your own test in vLLM",
    week=6,
    plan_item="w6.branch-passing-test-own",
    summary="your test passes, fails on a mutation of the code it tests; pre-commit and DCO pass",
    entry=None,  # nothing to import: the checks run git, pytest and pre-commit in your clone
    time_limit_s=1200.0,
    check_inputs=("contrib",),  # what `z2v contrib` stored, passed in
    caches=("pre-commit",),  # `pre-commit run` uses the hook environments you already have
)
