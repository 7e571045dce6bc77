"""A readable mini vLLM: paged KV cache, continuous batching, prefix caching, an OpenAI server.

Read it in this order (docs/engine-walkthrough.md follows one request through it):
sequence.py -> block_manager.py -> scheduler.py -> attention.py -> model.py -> model_runner.py
-> llm_engine.py -> engine_thread.py -> openai_protocol.py -> api_server.py (its HTTP framing:
serving/http_server.py)
(then the decode kernels: triton_attention.py, cpu_attention.py).
"""

import os

# Before torch loads OpenMP: an idle OpenMP worker spins a bounded while, then sleeps. A step's
# ~600 small ops follow each other within microseconds, so a worker that sleeps at once (PASSIVE)
# is woken hundreds of times a step, slowly on a VM; one that spins forever (ACTIVE alone) starves
# the HTTP thread and the client between steps. benchmarks/engine_cpu_ab.sh compares settings.
os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "100000")

from .config import EngineConfig, ModelConfig  # noqa: E402
from .llm_engine import LLMEngine  # noqa: E402
from .sequence import SamplingParams, Sequence  # noqa: E402

__all__ = ["EngineConfig", "ModelConfig", "LLMEngine", "SamplingParams", "Sequence"]
