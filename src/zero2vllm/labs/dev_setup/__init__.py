"""Week 6 lab: a development setup of the learner's vLLM clone: an editable install, vLLM's
pre-commit hooks installed, and a named subset of its CPU-runnable unit tests run."""

from zero2vllm.labs import Lab

LAB = Lab(
    id="dev-setup",
    title="vLLM development setup",
    week=6,
    plan_item="w6.editable-install-clone",
    summary="editable install of your clone, pre-commit hooks, V1 core tests with a JUnit report",
    entry=None,  # nothing to import: the checks look at your clone and its Python
    time_limit_s=1800.0,
    check_inputs=("contrib",),  # what `z2v contrib` stored, passed in
)
