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
def tiny_model_dir(smollm2_dir, tmp_path_factory) -> Path:
    """A random 2-layer Llama with SmolLM2's tokenizer: loads in well under a second and
    generates in milliseconds, for tests of serving plumbing rather than of the model."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    cfg = LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    for f in smollm2_dir.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(f, folder / f.name)
    return folder
