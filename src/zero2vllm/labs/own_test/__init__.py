"""Week 6 lab: the learner's branch adds a test that passes, and fails when the lab breaks the
behaviour it tests (a mutation from a small catalogue); pre-commit passes; commits signed off."""

from zero2vllm.contrib import plan_link
from zero2vllm.labs import Lab

LAB = Lab(
    id="own-test",
    title="Your own test in vLLM",
    week=6,
    # the bundled plan's deliverable names the lab id; the other words find it in your own plan
    keywords=("own-test", "own", "test", "passing", "branch"),
    summary="your test passes, fails on a mutation of the code it tests; pre-commit and DCO pass",
    entry=None,  # nothing to import: the checks run git, pytest and pre-commit in your clone
    time_limit_s=1200.0,
    **plan_link("w6.branch-passing-test-own"),
)
