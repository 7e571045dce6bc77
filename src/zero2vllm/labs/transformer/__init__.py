"""Week 1 lab: a character-level GPT the learner writes, checks and trains on tiny Shakespeare."""

from zero2vllm.labs import Lab

LAB = Lab(
    id="transformer",
    title="Character-level transformer",
    week=1,
    plan_item="w1.working-character-level",
    summary="a GPT in model.py: causal multi-head attention, trained on tiny Shakespeare",
    entry="model.py",
    time_limit_s=420.0,
)
