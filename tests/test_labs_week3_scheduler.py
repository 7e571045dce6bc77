"""The scheduler lab: the reference passes, the scaffold and typical mistakes fail naming them,
and (with Z2V_TEST_VLLM=1) the reference steps like real vLLM 0.32's Scheduler on fresh traces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from zero2vllm.labs import get_lab
from zero2vllm.labs.check import run_check

LAB = get_lab("scheduler")
REFERENCE = LAB.reference_dir / "scheduler.py"
DIFF = "same steps as vLLM's Scheduler"


def by_name(result):
    return {c["name"]: c for c in result.criteria}


def mutant(tmp_path, old: str, new: str) -> Path:
    src = REFERENCE.read_text()
    assert src.count(old) == 1, old
    (tmp_path / "scheduler.py").write_text(src.replace(old, new))
    return tmp_path


@pytest.fixture
def recorded(home, monkeypatch):
    monkeypatch.setenv("Z2V_LAB_ORACLE", "recorded")


def test_reference_passes_with_recorded_vllm_results(recorded):
    result = run_check(LAB, LAB.reference_dir, fast=True)
    assert result.passed, result.criteria
    assert "300 traces recorded from vLLM 0.32.0" in by_name(result)[DIFF]["detail"]
    assert result.metrics["recorded_traces"] == 300 and result.metrics["live_traces"] == 0


def test_scaffold_fails(recorded):
    crit = by_name(run_check(LAB, LAB.scaffold_dir, fast=True))
    assert crit["imports"]["passed"] and "TODO" in crit["token budget and max_num_seqs"]["detail"]
    assert not any(c["passed"] for n, c in crit.items() if n != "imports")


def test_preempting_the_head_is_named(recorded, tmp_path):
    path = mutant(tmp_path, "victim = self.running.pop()", "victim = self.running.pop(0)")
    crit = by_name(run_check(LAB, path, fast=True, only=["preemption by recompute", DIFF]))
    assert "the newest running requests were" in crit["preemption by recompute"]["detail"]
    assert "differs from vLLM's Scheduler (recorded from vLLM 0.32.0)" in crit[DIFF]["detail"]


def test_recorded_traces_preempt_and_chunk():
    from zero2vllm.labs._vllm_oracle import load_recorded
    from zero2vllm.labs._vllm_oracle.traces import scheduler_trace

    version, recs = load_recorded(LAB.dir / "recorded_vllm.json.gz", scheduler_trace)
    steps = [s for _, results in recs for s in results]
    assert version == "0.32.0" and len(recs) == 300
    assert sum(1 for _, results in recs if any(s["preempted"] for s in results)) >= 30
    assert sum(1 for s in steps for n in s["scheduled"].values() if n > 1) > 500  # prompt chunks


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("Z2V_TEST_VLLM") != "1", reason="real vLLM: set Z2V_TEST_VLLM=1 to run")
def test_reference_steps_like_live_vllm(home, monkeypatch):
    monkeypatch.delenv("Z2V_LAB_ORACLE", raising=False)
    monkeypatch.setenv("Z2V_LAB_LIVE_TRACES", "1000")
    done = subprocess.run([sys.executable, "-m", "zero2vllm", "vllm", "install", "--cpu"], capture_output=True,
                          text=True, timeout=1500, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    result = run_check(LAB, LAB.reference_dir, only=[DIFF], timeout_s=600)
    assert result.passed, by_name(result)
    assert result.metrics["live_traces"] == 1000 and "1000 live on vLLM 0.32.0" in by_name(result)[DIFF]["detail"]
