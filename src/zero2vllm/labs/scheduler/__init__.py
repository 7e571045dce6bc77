"""Week 3 lab: one step of vLLM V1's scheduler (continuous batching), checked against vLLM's own."""

from zero2vllm.labs import Lab

# h1's explicit plan link, where that Lab field exists; keywords find the same item until then
_PLAN = {"plan_item": "w3.continuous-batching-scheduler"} if "plan_item" in Lab.__dataclass_fields__ else {}

LAB = Lab(
    id="scheduler",
    title="Continuous batching: vLLM V1's schedule() step",
    week=3,
    keywords=("continuous", "batching", "scheduler", "schedule", "throughput"),
    summary="token budget, chunked prefill, recompute preemption: the same steps as vLLM 0.32's Scheduler",
    entry="scheduler.py",
    **_PLAN,
    time_limit_s=240.0,
)
