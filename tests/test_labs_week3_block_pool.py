"""The block-pool lab: the reference passes, the scaffold and typical mistakes fail naming them,
and (with Z2V_TEST_VLLM=1) the reference agrees with real vLLM 0.32 on 1,000 fresh traces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from zero2vllm.labs import get_lab
from zero2vllm.labs.check import run_check

LAB = get_lab("block-pool")
REFERENCE = LAB.reference_dir / "block_pool.py"


def by_name(result):
    return {c["name"]: c for c in result.criteria}


def mutant(tmp_path, old: str, new: str) -> Path:
    src = REFERENCE.read_text()
    assert src.count(old) == 1, old
    (tmp_path / "block_pool.py").write_text(src.replace(old, new))
    return tmp_path


@pytest.fixture
def recorded(home, monkeypatch):
    monkeypatch.setenv("Z2V_LAB_ORACLE", "recorded")


def test_reference_passes_with_recorded_vllm_results(recorded):
    result = run_check(LAB, LAB.reference_dir, fast=True)
    assert result.passed, result.criteria
    crit = by_name(result)
    assert "recorded from vLLM 0.32.0" in crit["same steps as vLLM's KVCacheManager"]["detail"]
    assert "live run off" in crit["same steps as vLLM's KVCacheManager"]["detail"]
    assert result.metrics["recorded_traces"] == 300 and result.metrics["live_traces"] == 0


def test_scaffold_fails_on_the_free_queue(recorded):
    crit = by_name(run_check(LAB, LAB.scaffold_dir, fast=True))
    assert crit["imports"]["passed"] and not crit["free queue"]["passed"]
    assert "TODO" in crit["free queue"]["detail"]
    assert not any(c["passed"] for n, c in crit.items() if n != "imports")


def test_forward_order_free_breaks_the_design_doc_example(recorded, tmp_path):
    path = mutant(tmp_path, "self.block_pool.free_blocks(reversed(blocks))", "self.block_pool.free_blocks(blocks)")
    crit = by_name(run_check(LAB, path, fast=True, only=["design-doc example"]))
    detail = crit["design-doc example"]["detail"]
    assert not crit["design-doc example"]["passed"] and "time 5" in detail and "queue" in detail


def test_unchained_hash_is_named(recorded, tmp_path):
    path = mutant(tmp_path, "return hash((parent_block_hash, tuple(curr_block_token_ids)))",
                  "return hash(tuple(curr_block_token_ids))")
    crit = by_name(run_check(LAB, path, fast=True, only=["block hashes", "same steps as vLLM's KVCacheManager"]))
    assert "parent hash not chained" in crit["block hashes"]["detail"]
    assert "differs from vLLM (recorded from vLLM 0.32.0)" in crit["same steps as vLLM's KVCacheManager"]["detail"]


def test_recorded_results_match_the_trace_generator():
    from zero2vllm.labs._vllm_oracle import load_recorded
    from zero2vllm.labs._vllm_oracle.traces import block_pool_trace

    version, recs = load_recorded(LAB.dir / "recorded_vllm.json.gz", block_pool_trace)
    assert version == "0.32.0" and len(recs) == 300
    ops = [r for _, results in recs for r in results]
    # the traces exercise what they claim to: hits, evictions, failed allocations
    assert sum(r.get("hit", 0) > 0 for r in ops) > 500 and sum(r["evicted"] for r in ops) > 500
    assert sum(r.get("ok") is False for r in ops) > 200


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("Z2V_TEST_VLLM") != "1", reason="real vLLM: set Z2V_TEST_VLLM=1 to run")
def test_reference_agrees_with_live_vllm_on_1000_fresh_traces(home, monkeypatch):
    monkeypatch.delenv("Z2V_LAB_ORACLE", raising=False)
    monkeypatch.delenv("Z2V_LAB_LIVE_TRACES", raising=False)
    done = subprocess.run([sys.executable, "-m", "zero2vllm", "vllm", "install", "--cpu"], capture_output=True,
                          text=True, timeout=1500, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    result = run_check(LAB, LAB.reference_dir, only=["same steps as vLLM's KVCacheManager"])
    crit = by_name(result)
    assert result.passed, crit
    assert result.metrics["live_traces"] >= 1000
    assert "1000 live on vLLM 0.32.0" in crit["same steps as vLLM's KVCacheManager"]["detail"]
    assert result.duration_s < 120
