"""A learner's block pool or scheduler plugged into the mini engine gives Hugging Face's greedy
tokens, as the engine does with its own (tests/test_engine_correctness.py, fewer prompts): with
a pool of 4 blocks (64 slots), so small that requests are preempted and prompts chunked."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_cache import smollm2_dir  # noqa: F401

torch = pytest.importorskip("torch")

CASES = Path(__file__).parent / "lab_cases"
NEW_TOKENS = 10
SHARED = "You are a helpful assistant. Answer briefly and precisely, and never make up facts. "
PROMPTS = ["Hi", SHARED + "Question: what is the largest planet? Answer:", "def fibonacci(n):\n    ",
           SHARED + "Question: who wrote Hamlet? Answer:", "Once upon a time, in a small village by the sea, " * 3]


@pytest.fixture(scope="module")
def reference(smollm2_dir):  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
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


def load(path: Path, name: str):
    from zero2vllm.labs.framework import load_module

    return load_module(path, name)


def generate_twice(engine):
    from zero2vllm.engine import SamplingParams

    params = SamplingParams(max_tokens=NEW_TOKENS, ignore_eos=True)  # full length: the pool must fill up
    return [[o["token_ids"] for o in engine.generate(PROMPTS, params)] for _ in range(2)]


def assert_hf(got, want):
    for i, (g, w) in enumerate(zip(got, want)):  # HF stops at EOS; ours runs on (ignore_eos)
        assert len(g) == NEW_TOKENS and g[:len(w)] == w, f"prompt {i}: {g} != {w}"


def engine_with(folder, tok, num_kv_blocks=4, **factories):
    from zero2vllm.engine import EngineConfig, LLMEngine

    cfg = EngineConfig(model=str(folder), num_threads=1, num_kv_blocks=num_kv_blocks, max_num_batched_tokens=32)
    return LLMEngine(cfg, tokenizer=tok, **factories)


@pytest.mark.slow
def test_learner_block_pool_in_the_engine_matches_hf(smollm2_dir, reference):  # noqa: F811
    from zero2vllm.labs.block_pool.engine_adapter import learner_block_manager

    tok, want = reference
    module = load(CASES / "block-pool" / "correct" / "priorities" / "block_pool.py", "z2v_test_pool")
    engine = engine_with(smollm2_dir, tok, block_manager_factory=learner_block_manager(module))
    first, second = generate_twice(engine)
    assert_hf(first, want)
    assert_hf(second, want)  # the second round's prompts hit the learner's prefix cache
    assert engine.scheduler.num_preemptions > 0
    pool = engine.block_manager.mgr.block_pool
    assert pool.get_num_free_blocks() == 4 and any(b.block_hash is not None for b in pool.blocks)


@pytest.mark.slow
def test_learner_scheduler_in_the_engine_matches_hf(smollm2_dir, reference):  # noqa: F811
    from zero2vllm.labs.block_pool.engine_adapter import learner_block_manager
    from zero2vllm.labs.block_pool.reference import block_pool as reference_pool
    from zero2vllm.labs.scheduler.engine_adapter import learner_scheduler

    tok, want = reference
    module = load(CASES / "scheduler" / "correct" / "helpers" / "scheduler.py", "z2v_test_sched")
    engine = engine_with(smollm2_dir, tok, block_manager_factory=learner_block_manager(reference_pool),
                         scheduler_factory=learner_scheduler(module))
    first, second = generate_twice(engine)
    assert_hf(first, want)
    assert_hf(second, want)
    assert engine.scheduler.num_preemptions > 0 and engine.block_manager.num_free_blocks == 4
    assert not engine.scheduler.sched.running and not engine.scheduler.sched.waiting
