"""Week 8 lab: the learner's PR, followed on GitHub from opened to merged."""

from zero2vllm.labs import Lab

LAB = Lab(
    id="pr-merged",
    title="Your PR, merged",
    week=8,
    plan_item="w8.merged-pr-vllm-project-vllm",
    summary="your PR on GitHub: ready label, CI green, review comments answered, merged",
    entry=None,  # pr-url.txt in the lab folder, or `z2v contrib init --pr URL`
    time_limit_s=120.0,
    check_inputs=("contrib",),  # what `z2v contrib` stored, passed in
)
