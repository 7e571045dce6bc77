"""Week 3 lab: decode attention over a paged K/V pool and block tables, with grouped-query heads."""

from zero2vllm.labs import Lab


LAB = Lab(
    id="paged-attention",
    title="PagedAttention: decode attention through block tables",
    week=3,
    plan_item="w3.pagedattention-decode-through",
    summary="attention over a paged K/V pool with GQA: equal to dense attention, never a dense copy of the cache",
    entry="paged_attention.py",
    time_limit_s=120.0,
)
