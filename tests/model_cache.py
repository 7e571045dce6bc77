"""Shared SmolLM2 for the tests: converted from the GGUF once, reused by every test and run.

The first conversion takes ~25 s, every later load ~2 s. The converted folder lives in
$ZERO2VLLM_MODEL_CACHE when set, else <repo>/.devcache/models (git-ignored), so it survives
between test runs and is shared by all test files (and their subprocesses, through the env).
Use it with `from model_cache import smollm2_dir  # noqa: F401` and a `smollm2_dir` argument.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_model_cache() -> Path:
    path = Path(os.environ.setdefault("ZERO2VLLM_MODEL_CACHE", str(REPO / ".devcache" / "models")))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    shared_model_cache()
    from zero2vllm.models import ensure_model_dir

    return ensure_model_dir("smollm2")


@pytest.fixture(scope="session")
def tiny_model_dir(smollm2_dir) -> Path:
    """A random 2-layer Llama with SmolLM2's tokenizer (zero2vllm.models.ensure_tiny_model_dir):
    loads in well under a second and generates in milliseconds, for tests of serving plumbing."""
    from zero2vllm.models import ensure_tiny_model_dir

    return ensure_tiny_model_dir()
