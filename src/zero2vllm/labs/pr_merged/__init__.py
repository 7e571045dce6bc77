"""Week 8 lab: the learner's PR, followed on GitHub from opened to merged."""

from zero2vllm.contrib import plan_link
from zero2vllm.labs import Lab

LAB = Lab(
    id="pr-merged",
    title="Your PR, merged",
    week=8,
    # the bundled plan's deliverable names the lab id; the other words find it in your own plan
    keywords=("pr-merged", "merged", "land", "pr"),
    summary="your PR on GitHub: ready label, CI green, review comments answered, merged",
    entry=None,  # pr-url.txt in the lab folder, or `z2v contrib init --pr URL`
    time_limit_s=120.0,
    **plan_link("w8.merged-pr-vllm-project-vllm"),
)
