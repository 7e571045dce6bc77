"""The paged-attention lab: the reference passes, the scaffold and typical mistakes fail naming them."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from zero2vllm.labs import get_lab  # noqa: E402
from zero2vllm.labs.check import run_check  # noqa: E402

LAB = get_lab("paged-attention")
REFERENCE = LAB.reference_dir / "paged_attention.py"


def by_name(result):
    return {c["name"]: c for c in result.criteria}


def mutant(tmp_path, old: str, new: str) -> Path:
    src = REFERENCE.read_text()
    assert src.count(old) == 1, old
    (tmp_path / "paged_attention.py").write_text(src.replace(old, new))
    return tmp_path


def test_reference_passes(home):
    result = run_check(LAB, LAB.reference_dir, fast=True)
    assert result.passed, result.criteria
    assert result.metrics["fp32_max_abs_err"] <= 1e-5 and result.metrics["bf16_max_abs_err"] <= 3e-2


def test_scaffold_fails(home):
    crit = by_name(run_check(LAB, LAB.scaffold_dir, fast=True))
    assert crit["imports"]["passed"] and "TODO" in crit["equal to dense attention (fp32)"]["detail"]
    assert not any(c["passed"] for n, c in crit.items() if n != "imports")


def test_off_by_one_on_the_partial_last_block_is_named(home, tmp_path):
    path = mutant(tmp_path, "        n = int(seq_lens[i])", "        n = int(seq_lens[i]) + 1")
    crit = by_name(run_check(LAB, path, fast=True, only=["equal to dense attention (fp32)"]))
    assert "off by one" in crit["equal to dense attention (fp32)"]["detail"]


def test_a_copy_of_the_whole_pool_is_caught(home, tmp_path):
    path = mutant(tmp_path, "    out = torch.empty_like(query)\n",
                  "    out = torch.empty_like(query)\n    key_cache = key_cache.clone()\n")
    crit = by_name(run_check(LAB, path, fast=True, only=["never a dense copy of the whole cache"]))
    assert not crit["never a dense copy of the whole cache"]["passed"]
    assert "gathered the whole cache densely" in crit["never a dense copy of the whole cache"]["detail"]
