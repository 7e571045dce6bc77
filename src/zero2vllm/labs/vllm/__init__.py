"""Week 3 lab: real vLLM, installed and serving, measured against the learner's own naive API."""

from zero2vllm.labs import Lab

LAB = Lab(
    id="vllm",
    title="Install, run and measure vLLM",
    week=3,
    plan_item="w3.install-run-vllm",
    summary="real vLLM serves the OpenAI API; `z2v compare` measured it against your naive API",
    entry=None,  # nothing to import: the checks talk to the running server
    evidence_inputs=("compare",),  # the recorded `z2v compare` runs, passed in by the parent
    time_limit_s=300.0,
)
