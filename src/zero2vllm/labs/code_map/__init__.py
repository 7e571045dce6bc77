"""Week 4 lab: a map from the concepts of weeks 3-4 to the code in vLLM that implements them,
checked against the installed vLLM's source."""

from zero2vllm.contrib import plan_link
from zero2vllm.labs import Lab

LAB = Lab(
    id="code-map",
    title="Code map of vLLM's engine and scheduler",
    week=4,
    # the bundled plan's deliverable names the lab id; the other words find it in your own plan
    keywords=("code-map", "code", "map", "file", "function"),
    summary="each concept mapped to file::Class.method, resolved in your installed vLLM",
    entry=None,  # code-map.toml, read by the checks
    time_limit_s=120.0,
    **plan_link("w4.code-map-one-requests"),
)
