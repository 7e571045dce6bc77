"""Tensor parallelism (engine/parallel.py, engine/executor.py): TP=2 on gloo gives TP=1's tokens.

A tiny random Llama (GQA: 4 query heads, 2 KV heads, so each rank keeps 2 and 1), fp32 on the
CPU, mixed prompts sharing a prefix, prefix caching on, a KV pool so small that sequences are
preempted and recomputed, and a token budget that chunks prompts. Both engines run in a child
process in its own session (torch.distributed's state never enters the test process, and a hang
is killed with all its ranks); it reports the tokens, the counters and the worker pids.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

SRC = str(Path(__file__).resolve().parents[1] / "src")

SCRIPT = r"""
import json, sys, torch
from zero2vllm.engine import EngineConfig, LLMEngine, SamplingParams

folder = sys.argv[1]
gen = torch.Generator().manual_seed(1)
shared = torch.randint(3, 300, (20,), generator=gen).tolist()
prompts = [torch.randint(3, 300, (n,), generator=gen).tolist() for n in (1, 5, 17, 9)]
prompts += [shared + [7, 8, 9], shared + [10]]
report = {}
for tp in (1, 2):
    engine = LLMEngine(EngineConfig(model=folder, tensor_parallel_size=tp, block_size=4, num_kv_blocks=12,
                                    max_model_len=64, max_num_batched_tokens=24), load_tokenizer=False)
    pids = [w.pid for w in getattr(engine.runner, "workers", [])]
    params = SamplingParams(max_tokens=8, ignore_eos=True)
    try:
        runs = [[o["token_ids"] for o in engine.generate(prompts, params)] for _ in range(2)]  # 2nd: cache hits
    finally:
        engine.shutdown()
    report[tp] = {"runs": runs, "preemptions": engine.scheduler.num_preemptions,
                  "prefix_hits": engine.block_manager.prefix_hits, "free": engine.block_manager.num_free_blocks,
                  "pids": pids, "alive": [w.is_alive() for w in getattr(engine.runner, "workers", [])]}
print(json.dumps({"prompts": prompts, "report": report}))
"""


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
                      tie_word_embeddings=False, initializer_range=0.3)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-llama-tp")
    LlamaForCausalLM(cfg).eval().save_pretrained(path)
    return path


def run_isolated(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    """Run a child in its own session; on a timeout kill the whole session (every rank)."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"the TP run did not finish in {timeout} s")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_tp2_gives_tp1_tokens_with_prefix_caching_and_preemption(tiny_dir):
    done = run_isolated(["-c", SCRIPT, str(tiny_dir)])
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    one, two = result["report"]["1"], result["report"]["2"]
    assert two["runs"] == one["runs"]  # token for token, both rounds
    assert all(len(o) == 8 for run in two["runs"] for o in run)
    assert two["preemptions"] > 0 and two["preemptions"] == one["preemptions"]
    assert two["prefix_hits"] > 0 and two["prefix_hits"] == one["prefix_hits"]
    assert two["free"] == 12  # every block back in the pool
    assert len(two["pids"]) == 1 and two["alive"] == [False] and all(gone(p) for p in two["pids"])
    # and the tokens are Hugging Face's greedy choices (each one HF's argmax, up to float noise)
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    for p, o in zip(result["prompts"], two["runs"][0]):
        with torch.inference_mode():
            logits = model(torch.tensor([p + o])).logits[0, len(p) - 1:-1]
        chosen = logits.gather(1, torch.tensor(o)[:, None]).squeeze(1)
        assert (logits.max(1).values - chosen).max().item() < 1e-4


def test_a_size_that_does_not_divide_the_heads_is_one_line_before_any_process(tiny_dir, capsys):
    from zero2vllm.engine import EngineConfig
    from zero2vllm.commands.serve_engine import main

    with pytest.raises(ValueError, match="tensor_parallel_size must divide"):
        EngineConfig(model=str(tiny_dir), tensor_parallel_size=3)
    with pytest.raises(ValueError, match="tensor_parallel_size must divide"):
        EngineConfig(model=str(tiny_dir), tensor_parallel_size=0)
    assert main(["--model", str(tiny_dir), "--tensor-parallel-size", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: tensor_parallel_size must divide") and err.count("\n") == 1
    assert not torch.distributed.is_initialized()
