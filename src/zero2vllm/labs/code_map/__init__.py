"""Week 4 lab: a map from the concepts of weeks 3-4 to the code in vLLM that implements them,
checked against the installed vLLM's source."""

from zero2vllm.labs import Lab

LAB = Lab(
    id="code-map",
    title="Code map of vLLM's engine and scheduler",
    week=4,
    plan_item="w4.code-map-one-requests",
    summary="each concept mapped to file::Class.method, resolved in your installed vLLM",
    entry=None,  # code-map.toml, read by the checks
    time_limit_s=120.0,
    check_inputs=("contrib", "predictions"),  # what `z2v contrib` stored, passed in
)
