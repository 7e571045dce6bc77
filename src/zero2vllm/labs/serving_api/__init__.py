"""Week 2 project: a naive LLM serving API in Flask, checked by driving it over HTTP."""

from zero2vllm.labs import Lab

LAB = Lab(
    id="serving-api",
    title="Naive LLM serving API",
    week=2,
    plan_item="w2.working-api-performance",
    summary="your Flask app.py: POST /generate, /health, /metrics, 400s for bad input, never a crash",
    entry="app.py",
    time_limit_s=300.0,
)
