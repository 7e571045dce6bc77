"""The engine's greedy outputs equal Hugging Face generate's, token for token (SmolLM2, fp32, CPU).

Mixed-length prompts are submitted at once, so each step mixes prompts with decodes; then again
with prefix caching hits, without prefix caching (and with the PyTorch decode attention instead
of the C++ kernel), with a pool so small that sequences are preempted and recomputed, and with a
token budget so small that prompts are chunked.
"""

from __future__ import annotations

import pytest

from model_cache import smollm2_dir  # noqa: F401

torch = pytest.importorskip("torch")

NEW_TOKENS = 12
SHARED = ("You are a helpful assistant. Answer briefly and precisely, and never make up facts. "
          "If you do not know, say so. ")
PROMPTS = [
    "Hi",
    "The capital of France is",
    SHARED + "Question: what is the largest planet in the solar system? Answer:",
    "def fibonacci(n):\n    ",
    SHARED + "Question: who wrote Hamlet? Answer:",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who " * 3,
]


@pytest.fixture(scope="module")
def reference(smollm2_dir):  # noqa: F811
    """HF generate, one prompt at a time, greedy."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)  # the other test worker has the second core: a second thread would only spin
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    outs = []
    for p in PROMPTS:
        ids = tok(p, return_tensors="pt").input_ids
        with torch.inference_mode():
            gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                                 do_sample=False, pad_token_id=tok.eos_token_id)
        outs.append(gen[0, ids.shape[1]:].tolist())
    return tok, outs


def make_engine(folder, tok, **kw):
    from zero2vllm.engine import EngineConfig, LLMEngine

    return LLMEngine(EngineConfig(model=str(folder), num_threads=1, **kw), tokenizer=tok)


def run(engine):
    from zero2vllm.engine import SamplingParams

    params = SamplingParams(max_tokens=NEW_TOKENS)
    return [o["token_ids"] for o in engine.generate(PROMPTS, params)]


def assert_same(got, want):
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w[:len(g)] and (len(g) == len(w) or len(g) == NEW_TOKENS), f"prompt {i}: {g} != {w}"


@pytest.mark.slow
def test_matches_hf_with_prefix_caching(smollm2_dir, reference):  # noqa: F811
    tok, want = reference
    engine = make_engine(smollm2_dir, tok, enable_prefix_caching=True, huge_pages=True)  # as `z2v serve engine`
    assert engine.runner.decode_kernel is not None  # the C++ decode attention (cpu_kernels.py)
    from zero2vllm.engine.model import CPU_KERNELS

    assert len(CPU_KERNELS) == 3  # and the C++ fused ops: these answers are theirs
    assert_same(run(engine), want)
    assert engine.block_manager.prefix_hits == 0  # all submitted at once: nothing cached yet
    steps_first = engine.stats.steps
    # the same prompts again: their full blocks come from the cache, and the answers do not change
    assert_same(run(engine), want)
    full_blocks = sum((len(tok(p).input_ids) - 1) // 16 for p in PROMPTS)
    assert full_blocks >= 6 and engine.block_manager.prefix_hits == 16 * full_blocks
    assert engine.stats.steps > steps_first
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks


@pytest.mark.slow
def test_matches_hf_without_prefix_caching(smollm2_dir, reference):  # noqa: F811
    tok, want = reference
    engine = make_engine(smollm2_dir, tok, enable_prefix_caching=False, cpu_decode_kernel=False)
    assert engine.runner.decode_kernel is None  # the PyTorch gather + SDPA path
    assert_same(run(engine), want)
    assert engine.block_manager.prefix_hits == 0 and not engine.block_manager.hash_to_block


@pytest.mark.slow
def test_matches_hf_with_preemption_and_chunked_prompts(smollm2_dir, reference):  # noqa: F811
    tok, want = reference
    # 9 blocks of 16 = 144 slots: the longest prompt (~70 tokens) + 12 fits alone, not all six
    engine = make_engine(smollm2_dir, tok, num_kv_blocks=9, max_num_batched_tokens=32)
    assert_same(run(engine), want)
    assert engine.scheduler.num_preemptions > 0
    assert engine.block_manager.num_free_blocks == 9
