"""Week 3 lab: one step of vLLM V1's scheduler (continuous batching), checked against vLLM's own."""

from zero2vllm.labs import Lab


LAB = Lab(
    id="scheduler",
    title="Continuous batching: vLLM V1's schedule() step",
    week=3,
    plan_item="w3.continuous-batching-scheduler",
    summary="token budget, chunked prefill, recompute preemption: the same steps as vLLM 0.32's Scheduler",
    entry="scheduler.py",
    time_limit_s=240.0,
)
