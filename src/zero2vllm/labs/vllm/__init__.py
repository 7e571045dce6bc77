"""Week 3 lab: real vLLM, installed and serving, measured against the learner's own naive API."""

from zero2vllm.labs import Lab

LAB = Lab(
    id="vllm",
    title="Install, run and measure vLLM",
    week=3,
    keywords=("install", "run", "vllm"),  # "HANDS-ON: Install and run vLLM"
    summary="real vLLM serves the OpenAI API; `z2v compare` measured it against your naive API",
    entry=None,  # nothing to import: the checks talk to the running server
    time_limit_s=300.0,
    host_network=True,  # the learner's vLLM server runs outside the check's sandbox
)
