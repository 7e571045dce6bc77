"""`z2v profile kv`: the cache is measured from its tensors and equals the formula."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner
from model_cache import smollm2_dir  # noqa: F401

torch = pytest.importorskip("torch")


def run_cli(*args):
    from zero2vllm.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_formula_and_tensor_walk():
    from zero2vllm.instruments.kvprofile import formula_bytes, line_fit, tensors_bytes

    assert formula_bytes(30, 3, 64, 4, 1) == 46_080  # SmolLM2 fp32
    assert formula_bytes(16, 8, 64, 2, 1) == 32 * 1024  # Llama 3.2 1B bf16
    k = torch.zeros(1, 3, 10, 64)
    v = torch.zeros(1, 3, 10, 64, dtype=torch.bfloat16)
    # nested containers, a repeated tensor and a view of it count once
    cache = {"layers": [(k, v), (k, v[:, :, :5])], "pos": 10}
    assert tensors_bytes(cache) == k.numel() * 4 + v.numel() * 2
    slope, intercept, r2 = line_fit([1, 2, 3], [10, 20, 30])
    assert (round(slope, 6), round(intercept, 6), round(r2, 6)) == (10, 0, 1)


def test_profile_any_local_hf_folder(home, tmp_path):
    """A tiny GQA Llama saved as a folder, in bf16: bytes follow its own shape and dtype."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=24,
                      max_position_embeddings=128)
    torch.manual_seed(0)
    folder = tmp_path / "tiny-llama"
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(folder)
    out_dir = tmp_path / "out"
    r = run_cli("profile", "kv", "--model", str(folder), "--lengths", "4,16,40",
                "--decode-steps", "2", "--threads", "1", "--out-dir", str(out_dir))
    assert r.exit_code == 0, r.output
    per_token = 2 * 3 * 2 * 24 * 2
    rows = list(csv.DictReader(open(next(out_dir.glob("*.csv")))))
    assert [int(x["kv_bytes"]) for x in rows] == [per_token * n for n in (4, 16, 40)]
    assert all(x["dtype"] == "bfloat16" for x in rows)
    data = json.loads(next(out_dir.glob("*.json")).read_text())
    assert data["all_match"] and data["fit_slope"] == pytest.approx(per_token)
    assert next(out_dir.glob("*.png")).stat().st_size > 10_000
    # too long for the model's context -> one-line error, exit 2
    r = run_cli("profile", "kv", "--model", str(folder), "--lengths", "200")
    assert r.exit_code == 2 and "context of 128" in r.output


def test_bad_model_and_lengths(home, tmp_path):
    r = run_cli("profile", "kv", "--model", str(tmp_path), "--lengths", "8")
    assert r.exit_code == 2 and "no config.json" in r.output
    r = run_cli("profile", "kv", "--lengths", "8,abc")
    assert r.exit_code == 2 and "--lengths" in r.output
    r = run_cli("profile", "kv", "--model", "nobody/not-a-model", "--lengths", "8")
    assert r.exit_code == 2 and "never downloads" in r.output


@pytest.mark.slow
def test_smollm2_kv_equals_formula_at_every_length(home, smollm2_dir):
    """The issue's must-show: 46,080 B per token in fp32, measured from the cache tensors."""
    r = run_cli("profile", "kv", "--model", "smollm2", "--lengths", "8,32,64", "--decode-steps", "1",
                "--threads", "1")
    assert r.exit_code == 0, r.output
    assert "46,080 B per token" in r.output and "measured == formula at every length" in r.output
    from zero2vllm.tracker.store import Store

    store = Store.open(home / "zero2vllm.db")
    (run,) = store.lab_runs("kv-cache", kind="profile")
    assert run["passed"] and run["metrics"]["fit_slope"] == pytest.approx(46_080)
    assert run["metrics"]["bytes_per_token"] == 46_080
    rows = list(csv.DictReader(open([a for a in run["artifacts"] if a.endswith(".csv")][0])))
    assert [int(x["kv_bytes"]) for x in rows] == [46_080 * n for n in (8, 32, 64)]
    assert all(int(x["rss_bytes"]) > 500 * 2**20 for x in rows)  # the model itself is ~0.5 GiB
