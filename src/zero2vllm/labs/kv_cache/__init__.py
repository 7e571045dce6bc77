"""Week 2 lab: add a KV cache to the week-1 GPT, and see what it buys and what it costs."""

from zero2vllm.labs import Lab

LAB = Lab(
    id="kv-cache",
    title="KV cache for your GPT",
    week=2,
    plan_item="w2.profile-transformer-week-1",
    summary="cached generation: same tokens as uncached, cache bytes = formula, flat time per token",
    entry="model.py",
    time_limit_s=300.0,
)
