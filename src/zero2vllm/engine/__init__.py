"""A readable mini vLLM: paged KV cache, continuous batching, prefix caching, an OpenAI server.

Read it in this order (docs/engine-walkthrough.md follows one request through it):
sequence.py -> block_manager.py -> scheduler.py -> attention.py -> model.py -> model_runner.py
-> llm_engine.py -> engine_thread.py -> openai_protocol.py -> api_server.py (its HTTP framing:
instruments/http_server.py)
(then the decode kernels: kernels/triton_attention.py, kernels/cpu_kernels.py).

The names below load on first use, so `zero2vllm.engine.traces` (saved traces, stdlib only) can
be read by the dashboard without importing torch.
"""

import os

# Before torch loads OpenMP: an idle OpenMP worker spins a bounded while, then sleeps. A step's
# ~600 small ops follow each other within microseconds, so a worker that sleeps at once (PASSIVE)
# is woken hundreds of times a step, slowly on a VM; one that spins forever (ACTIVE alone) starves
# the HTTP thread and the client between steps. benchmarks/engine_cpu_ab.sh compares settings.
os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "100000")

_LAZY = {"EngineConfig": "config", "ModelConfig": "config", "LLMEngine": "llm_engine",
         "SamplingParams": "sequence", "Sequence": "sequence"}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
