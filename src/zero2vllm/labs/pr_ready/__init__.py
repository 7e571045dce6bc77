"""Week 7 lab: the PR dossier. Title tags, the template's sections filled in, the Test Plan's
commands run and compared with the Test Result, sign-offs, diff size, docs."""

from zero2vllm.labs import Lab

LAB = Lab(
    id="pr-ready",
    title="PR ready for review",
    week=7,
    plan_item="w7.draft-pr-test-fix",
    summary="a PR description vLLM's reviewers can act on, its Test Plan rerun by the check",
    entry=None,  # PR.md in the lab folder, and your clone
    time_limit_s=1200.0,
    check_inputs=("contrib",),  # what `z2v contrib` stored, passed in
)
