"""Week 4 lab: a hook the learner writes records vLLM's scheduler output at every step of an
offline CPU run (SmolLM2, two requests); the check verifies it against vLLM's own state and
compares the schedule with zero2vllm's engine on the same prompts."""

from zero2vllm.labs import Lab

LAB = Lab(
    id="trace-step",
    title="Trace vLLM's scheduler, step by step",
    week=4,
    plan_item="w4.step-by-step-scheduler-trace-two",
    summary="your hook records each step's tokens and blocks in a real vLLM run; checked against vLLM",
    entry=None,  # hook.py runs inside vLLM's venv, not in this process
    time_limit_s=900.0,
    check_inputs=("contrib",),  # what `z2v contrib` stored, passed in
)
