"""Week 6 lab: a development setup of the learner's vLLM clone: an editable install, vLLM's
pre-commit hooks installed, and a named subset of its CPU-runnable unit tests run."""

from zero2vllm.contrib import plan_link
from zero2vllm.labs import Lab

LAB = Lab(
    id="dev-setup",
    title="vLLM development setup",
    week=6,
    # the bundled plan's deliverable names the lab id; the other words find it in your own plan
    keywords=("dev-setup", "editable", "install", "pre-commit", "source", "build"),
    summary="editable install of your clone, pre-commit hooks, V1 core tests with a JUnit report",
    entry=None,  # nothing to import: the checks look at your clone and its Python
    time_limit_s=1800.0,
    **plan_link("w6.editable-install-clone"),
)
