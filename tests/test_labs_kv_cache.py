"""The kv-cache lab: the reference passes, the scaffold and typical mistakes fail, naming them."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("torch")

from zero2vllm.labs import get_lab  # noqa: E402
from zero2vllm.labs.check import run_check  # noqa: E402

LAB = get_lab("kv-cache")
REFERENCE = LAB.reference_dir / "model.py"


def mutant(tmp_path, old: str, new: str):
    src = REFERENCE.read_text()
    assert old in src, old
    (tmp_path / "model.py").write_text(src.replace(old, new))
    return tmp_path


def by_name(result):
    return {c["name"]: c for c in result.criteria}


def test_reference_passes(home):
    result = run_check(LAB, LAB.reference_dir, fast=True)
    assert result.passed, result.criteria
    assert result.metrics["cache_bytes_per_token"] == 2 * 2 * 4 * 8 * 4
    assert result.metrics["uncached_ms_long"] > result.metrics["cached_ms_long"]


def test_scaffold_fails(home):
    result = run_check(LAB, LAB.scaffold_dir, fast=True)
    crit = by_name(result)
    assert not result.passed and crit["imports"]["passed"]
    assert "not written yet" in crit["cache holds the expected tensors"]["detail"]
    rest = [c for n, c in crit.items() if n not in ("imports", "cache holds the expected tensors")]
    assert rest and all(c["status"] == "not run" and "needs" in c["detail"] for c in rest)


def test_positions_not_offset(home, tmp_path):
    path = mutant(tmp_path, "pos = torch.arange(past, past + T, device=idx.device)",
                  "pos = torch.arange(0, T, device=idx.device)")
    crit = by_name(run_check(LAB, path, fast=True, only=["cached logits equal uncached logits",
                                                          "cached generation gives the same tokens"]))
    assert not crit["cached logits equal uncached logits"]["passed"]
    assert "position len(cache)" in crit["cached logits equal uncached logits"]["detail"]
    assert "differ" in crit["cached generation gives the same tokens"]["detail"]


def test_cache_not_appended(home, tmp_path):
    path = mutant(tmp_path,
                  "self.k[layer] = torch.cat([self.k[layer], k], dim=2)\n"
                  "            self.v[layer] = torch.cat([self.v[layer], v], dim=2)",
                  "self.k[layer], self.v[layer] = k, v  # only this step's")
    crit = by_name(run_check(LAB, path, fast=True, only=["cache holds the expected tensors",
                                                          "cached logits equal uncached logits"]))
    assert not crit["cache holds the expected tensors"]["passed"]
    assert "appends" in crit["cache holds the expected tensors"]["detail"]
    assert not crit["cached logits equal uncached logits"]["passed"]


def test_generate_ignores_the_cache(home, tmp_path):
    """Right tokens, but the whole sequence fed every step: the measured FLOPs say so."""
    path = mutant(tmp_path, "logits, _ = self(idx_next, kv_cache=cache)  # decode",
                  "logits, _ = self(idx)  # decode")
    work = "decoding does one token's work (not the whole prefix)"
    crit = by_name(run_check(LAB, path, fast=True, only=["cached generation gives the same tokens", work]))
    assert crit["cached generation gives the same tokens"]["passed"]
    assert "as much work as running the whole prefix" in crit[work]["detail"]


def test_held_bytes_counts_what_stays_in_memory():
    """A view keeps its whole base alive; one storage seen twice counts once; the model's
    parameters are not the cache's."""
    import torch

    from zero2vllm.labs.kv_cache.probe import held_bytes

    qkv = torch.zeros(2, 10, 3 * 8)
    k, v = qkv[..., 8:16], qkv[..., 16:]

    class Cache:
        def __init__(self):
            self.layers = [(k, v)]
            self.alias = {"k": k}
            self.model = torch.nn.Linear(100, 100)

    assert held_bytes(Cache()) == qkv.numel() * 4
    assert held_bytes([k.clone(), v.clone()]) == 2 * 2 * 10 * 8 * 4


def test_flops_are_counted_for_any_style():
    import torch
    import torch.nn.functional as F

    from zero2vllm.labs.kv_cache.probe import flops

    x, w = torch.randn(3, 16), torch.randn(16, 32)
    lin = torch.nn.Linear(16, 32)
    assert flops(lambda: x @ w) == 2 * 3 * 16 * 32
    assert flops(lambda: lin(x)) == 2 * 3 * 16 * 32
    assert flops(lambda: torch.einsum("ij,jk->ik", x, w)) == 2 * 3 * 16 * 32
    q = k = v = torch.randn(1, 2, 5, 8)
    assert flops(lambda: F.scaled_dot_product_attention(q, k, v)) == 4 * (2 * 5 * 8) * 5
    # three operands: contracted in the cheapest order, as opt_einsum would
    p, vv, wo = torch.randn(1, 2, 5, 7), torch.randn(1, 2, 7, 8), torch.randn(2, 8, 16)
    assert flops(lambda: torch.einsum("bhts,bhsd,hdc->btc", p, vv, wo)) == \
        2 * (2 * 5 * 7 * 8) + 2 * (5 * 2 * 8 * 16)


def test_profile_the_learners_model(z2v, home, tmp_path):
    """`z2v lab init` + the learner's finished model -> `z2v profile kv --model learner`."""
    import os

    ws = tmp_path / "ws"
    z2v("lab", "init", "kv-cache", str(ws))
    assert (ws / "model.py").exists() and (ws / "README.md").exists()
    r = z2v("profile", "kv", "--model", str(ws / "model.py"), "--lengths", "16", expect=2)
    assert "put nothing into the cache" in r.output  # the untouched scaffold
    shutil.copy(REFERENCE, ws / "model.py")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        shutil.move(str(ws), str(tmp_path / "kv-cache"))  # ./kv-cache is what "learner" finds
        r = z2v("profile", "kv", "--model", "learner", "--lengths", "16,40", "--decode-steps", "1")
    finally:
        os.chdir(cwd)
    assert "4,096 B per token" in r.output and "measured == formula at every length" in r.output
    from zero2vllm.tracker.store import Store

    (run,) = Store.open(home / "zero2vllm.db").lab_runs("kv-cache", kind="profile")
    assert run["passed"] and run["metrics"]["fit_slope"] == pytest.approx(4096)
    assert any(a.endswith(".png") and "kv-learner" in a for a in run["artifacts"])


def test_check_cli_reference_json(z2v):
    r = z2v("check", "kv-cache", "--reference", "--json", "--fast")
    data = json.loads(r.output)
    assert data["passed"] and len(data["criteria"]) == 11


def test_lab_run_profiles_the_reference(z2v, home):
    r = z2v("lab", "run", "kv-cache", "--steps", "1")
    assert "measured == formula at every length" in r.output
    from zero2vllm.tracker.store import Store

    (run,) = Store.open(home / "zero2vllm.db").lab_runs("kv-cache", kind="run")
    assert run["passed"] and run["metrics"]["bytes_per_token"] == 4096
