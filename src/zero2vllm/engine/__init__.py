"""A readable mini vLLM: paged KV cache, continuous batching, prefix caching, an OpenAI server.

Read it in this order (docs/engine-walkthrough.md follows one request through it):
sequence.py -> block_manager.py -> scheduler.py -> attention.py -> model.py -> model_runner.py
-> llm_engine.py -> server.py.
"""

import os

# Before torch loads OpenMP: idle OpenMP workers sleep instead of spinning. The engine shares the
# cores with its own HTTP thread (and on a 2-core box with everything else); spinning workers
# starve them (measured here under load: decode steps 3-5x slower). Set it to ACTIVE to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .config import EngineConfig, ModelConfig  # noqa: E402
from .llm_engine import LLMEngine  # noqa: E402
from .sequence import SamplingParams, Sequence  # noqa: E402

__all__ = ["EngineConfig", "ModelConfig", "LLMEngine", "SamplingParams", "Sequence"]
