"""Week 3 lab: vLLM V1's block pool with prefix caching, checked against vLLM's own KVCacheManager."""

from zero2vllm.labs import Lab


LAB = Lab(
    id="block-pool",
    title="Block pool with prefix caching (vLLM V1)",
    week=3,
    plan_item="w3.block-pool-prefix-caching",
    summary="free queue (LRU), ref counts, chained block hashes, prefix hits: step for step as vLLM 0.32",
    entry="block_pool.py",
    time_limit_s=180.0,
)
