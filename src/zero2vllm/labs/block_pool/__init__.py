"""Week 3 lab: vLLM V1's block pool with prefix caching, checked against vLLM's own KVCacheManager."""

from zero2vllm.labs import Lab

# h1's explicit plan link, where that Lab field exists; keywords find the same item until then
_PLAN = {"plan_item": "w3.block-pool-prefix-caching"} if "plan_item" in Lab.__dataclass_fields__ else {}

LAB = Lab(
    id="block-pool",
    title="Block pool with prefix caching (vLLM V1)",
    week=3,
    keywords=("paged", "block", "kv", "cache", "prefix", "memory"),
    summary="free queue (LRU), ref counts, chained block hashes, prefix hits: step for step as vLLM 0.32",
    entry="block_pool.py",
    **_PLAN,
    time_limit_s=180.0,
)
