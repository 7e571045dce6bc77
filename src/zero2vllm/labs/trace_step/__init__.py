"""Week 4 lab: a hook the learner writes records vLLM's scheduler output at every step of an
offline CPU run (SmolLM2, two requests); the check verifies it against vLLM's own state and
compares the schedule with zero2vllm's engine on the same prompts."""

from zero2vllm.contrib import plan_link
from zero2vllm.labs import Lab

LAB = Lab(
    id="trace-step",
    title="Trace vLLM's scheduler, step by step",
    week=4,
    # the bundled plan's deliverable names the lab id; the other words find it in your own plan
    keywords=("trace-step", "trace", "scheduler", "step"),
    summary="your hook records each step's tokens and blocks in a real vLLM run; checked against vLLM",
    entry=None,  # hook.py runs inside vLLM's venv, not in this process
    time_limit_s=900.0,
    **plan_link("w4.step-by-step-scheduler-trace-two"),
)
