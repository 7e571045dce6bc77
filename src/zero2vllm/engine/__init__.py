"""A readable mini vLLM: paged KV cache, continuous batching, prefix caching, an OpenAI server.

Read it in this order (docs/engine-walkthrough.md follows one request through it):
sequence.py -> block_manager.py -> scheduler.py -> attention.py -> model.py -> model_runner.py
-> llm_engine.py -> server.py.
"""

from .config import EngineConfig, ModelConfig
from .llm_engine import LLMEngine
from .sequence import SamplingParams, Sequence

__all__ = ["EngineConfig", "ModelConfig", "LLMEngine", "SamplingParams", "Sequence"]
