"""Week 7 lab: the PR dossier. Title tags, the template's sections filled in, the Test Plan's
commands run and compared with the Test Result, sign-offs, diff size, docs."""

from zero2vllm.contrib import plan_link
from zero2vllm.labs import Lab

LAB = Lab(
    id="pr-ready",
    title="PR ready for review",
    week=7,
    # the bundled plan's deliverable names the lab id; the other words find it in your own plan
    keywords=("pr-ready", "draft", "pr", "template", "description"),
    summary="a PR description vLLM's reviewers can act on, its Test Plan rerun by the check",
    entry=None,  # PR.md in the lab folder, and your clone
    time_limit_s=1200.0,
    **plan_link("w7.draft-pr-test-fix"),
)
