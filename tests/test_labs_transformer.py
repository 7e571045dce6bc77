"""The transformer lab: the reference passes the real checks (training included) and ticks the
plan's deliverable, the scaffold fails, and each typical mistake fails naming itself."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from zero2vllm.labs import get_lab
from zero2vllm.labs.check import files_hash, run_check

pytestmark = pytest.mark.ml

LAB = get_lab("transformer")
REFERENCE = (LAB.reference_dir / "model.py").read_text()
DELIVERABLE = "w1.working-character-level"

# name: (edits of the reference, the criterion that must fail, words its message must contain)
MUTANTS = {
    "no causal mask": (
        [('            att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))'
          '  # no peeking ahead\n', "")],
        "causality", "without a causal mask"),
    "mask sees one step ahead": (
        [("torch.tril(torch.ones(config.block_size, config.block_size))",
          "torch.tril(torch.ones(config.block_size, config.block_size), diagonal=1)")],
        "causality", "one step ahead"),
    "softmax over the wrong dim": (
        [("att = F.softmax(att, dim=-1)", "att = F.softmax(att, dim=-2)")],
        "causality", "softmax over the wrong dimension"),
    "heads not split": (
        [("hs = C // self.n_head\n", "hs = C\n"),
         ("q = q.view(B, T, self.n_head, hs).transpose(1, 2)", "q = q.unsqueeze(1)"),
         ("k = k.view(B, T, self.n_head, hs).transpose(1, 2)", "k = k.unsqueeze(1)"),
         ("v = v.view(B, T, self.n_head, hs).transpose(1, 2)", "v = v.unsqueeze(1)")],
        "heads split", "heads not split"),
    "targets shifted again": (
        [("F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))",
          "F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), "
          "targets[:, 1:].reshape(-1))")],
        "loss on next-token targets", "shifted again"),
    "targets shifted the wrong way": (
        [("F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))",
          "F.cross_entropy(logits[:, 1:].reshape(-1, logits.size(-1)).float(), "
          "targets[:, :-1].reshape(-1))")],
        "loss on next-token targets", "shifted the wrong way"),
}


def write_model(directory: Path, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.py").write_text(source)
    return directory


def mutate(edits) -> str:
    source = REFERENCE
    for old, new in edits:
        assert old in source, f"the reference no longer contains {old!r}"
        source = source.replace(old, new)
    return source


def by_name(result) -> dict:
    return {c["name"]: c for c in result.criteria}


@pytest.mark.parametrize("mistake", list(MUTANTS))
def test_each_mistake_fails_with_a_message_naming_it(home, tmp_path, mistake):
    edits, name, words = MUTANTS[mistake]
    learner = write_model(tmp_path / "mine", mutate(edits))
    result = run_check(LAB, learner, fast=True, only=[name])
    assert not result.passed
    crit = by_name(result)[name]
    assert crit["passed"] is False
    assert words in crit["detail"], crit["detail"]
    assert by_name(result)["imports"]["passed"]


def test_quick_criteria_pass_on_the_reference(home):
    quick = ["output shapes", "initial loss near ln(vocab)", "loss on next-token targets",
             "causality", "heads split", "generate"]
    result = run_check(LAB, LAB.reference_dir, fast=True, only=quick)
    assert [c["name"] for c in result.criteria] == ["imports"] + quick
    assert result.passed, json.dumps(result.criteria, indent=1)


@pytest.mark.slow
def test_reference_passes_every_real_criterion_and_ticks_the_deliverable(z2v, home, tmp_path):
    """The one full run in CI: the real CPU training criterion, through the CLI, as a learner's
    directory would be checked (so it is recorded and marks the plan item done)."""
    learner = write_model(tmp_path / "mine", REFERENCE)
    result = z2v("check", "transformer", str(learner), "--json")
    report = json.loads(result.output)
    assert set(report) == {"lab", "passed", "criteria", "metrics"}
    assert report["lab"] == "transformer" and report["passed"] is True
    assert all(set(c) == {"name", "passed", "detail"} and c["passed"] for c in report["criteria"])
    names = [c["name"] for c in report["criteria"]]
    assert "train on tiny Shakespeare" in names and "overfit one batch" in names
    from zero2vllm.labs.transformer.checks import CHECK_BAR

    assert report["metrics"]["val_loss"] <= CHECK_BAR

    from zero2vllm.tracker.store import Store
    from zero2vllm.paths import db_path

    store = Store.open(db_path())
    runs = store.lab_runs("transformer")
    assert len(runs) == 1 and runs[0]["passed"] and runs[0]["kind"] == "check"
    assert runs[0]["files_hash"] == files_hash(learner)
    assert runs[0]["metrics"]["val_loss"] == report["metrics"]["val_loss"]
    assert runs[0]["code_path"] == str(learner.resolve())
    assert store.state(DELIVERABLE).status == "done"


def test_untouched_scaffold_fails_and_is_recorded(z2v, home, tmp_path):
    target = tmp_path / "lab"
    out = z2v("lab", "init", "transformer", str(target)).output
    assert (target / "model.py").exists() and (target / "README.md").exists()
    assert "wrote" in out
    result = z2v("check", "transformer", str(target), "--json", expect=1)
    report = json.loads(result.output)
    assert report["passed"] is False
    failed = [c for c in report["criteria"] if not c["passed"]]
    assert len(failed) == len(report["criteria"]) - 1  # everything but "imports"
    assert all("NotImplementedError" in c["detail"] or "TODO" in c["detail"] for c in failed)

    from zero2vllm.paths import db_path
    from zero2vllm.tracker.store import Store

    store = Store.open(db_path())
    runs = store.lab_runs("transformer")
    assert [r["passed"] for r in runs] == [False]
    state = store.state(DELIVERABLE)
    assert state is None or state.status != "done"
    listing = z2v("lab", "list").output
    line = next(line for line in listing.splitlines() if line.startswith("transformer"))
    assert "failing" in line and "FAIL 1/" in line and DELIVERABLE in line


def test_init_never_overwrites(z2v, tmp_path):
    target = tmp_path / "lab"
    z2v("lab", "init", "transformer", str(target))
    (target / "model.py").write_text("# my work\n")
    out = z2v("lab", "init", "transformer", str(target)).output
    assert (target / "model.py").read_text() == "# my work\n"
    assert "kept" in out and "not overwritten" in out
    (tmp_path / "afile").write_text("x")
    bad = z2v("lab", "init", "transformer", str(tmp_path / "afile"), expect=2)
    assert "is a file" in bad.output


def test_reference_and_partial_checks_are_not_recorded(z2v, home):
    z2v("check", "transformer", "--reference", "--only", "output shapes")
    from zero2vllm.paths import db_path
    from zero2vllm.tracker.store import Store

    assert Store.open(db_path()).lab_runs("transformer") == []


def test_unknown_lab_is_a_one_line_error(z2v):
    result = z2v("check", "no-such-lab", expect=2)
    assert "no lab 'no-such-lab'" in result.output and "transformer" in result.output


def test_lab_run_trains_plots_saves_and_samples(z2v, home):
    result = z2v("lab", "run", "transformer", "--steps", "10")
    out = result.output
    assert "val loss" in out and "sample" in out
    from zero2vllm.paths import db_path
    from zero2vllm.tracker.store import Store

    runs = Store.open(db_path()).lab_runs("transformer", kind="run")
    assert len(runs) == 1 and runs[0]["metrics"]["steps"] == 10
    png, ckpt = (Path(a) for a in runs[0]["artifacts"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.parent == home / "labs" / "transformer"
    import torch

    saved = torch.load(ckpt, weights_only=False)
    assert saved["steps"] == 10 and len(saved["chars"]) == 65
    assert abs(saved["val_loss"] - runs[0]["metrics"]["val_loss"]) < 1e-3


def test_lab_run_reports_learner_import_errors_in_one_line(z2v, tmp_path):
    learner = write_model(tmp_path / "mine", "import nonexistent_module_xyz\n")
    result = z2v("lab", "run", "transformer", "--code", str(learner), "--steps", "5", expect=2)
    assert "does not import" in result.output and "nonexistent_module_xyz" in result.output


def test_files_hash_tracks_the_checked_code(tmp_path):
    d = write_model(tmp_path / "mine", "a = 1\n")
    first = files_hash(d)
    (d / "__pycache__").mkdir()
    (d / "__pycache__" / "x.pyc").write_bytes(b"junk")
    assert files_hash(d) == first
    (d / "model.py").write_text("a = 2\n")
    assert files_hash(d) != first
    assert files_hash(d / "model.py") == hashlib.sha256(b"model.py\0a = 2\n\0").hexdigest()


def test_lab_run_on_cuda_without_a_gpu_is_a_one_line_error(z2v):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = z2v("lab", "run", "transformer", "--device", "cuda", "--steps", "5", expect=2)
    assert "sees no CUDA device" in result.output and "--device cpu" in result.output


def test_trainer_keeps_the_best_weights_and_measures_the_whole_val_split():
    import torch

    from zero2vllm.labs.transformer.reference import train

    torch.set_num_threads(1)
    data = train.load_data()
    assert (len(data.train), len(data.val), data.vocab_size) == (1_003_854, 111_540, 65)
    cfg = train.preset("cpu", n_layer=1, n_head=2, n_embd=32, batch_size=8, max_steps=30,
                       eval_every=10, eval_from=10, lr=3e-2, target=None)
    result = train.train(cfg, data=data, keep_best=True)
    vals = [h["val_loss"] for h in result.history if "val_loss" in h]
    assert len(vals) == 3 and result.best_val == min(vals) and result.final_val == vals[-1]
    result.model.load_state_dict(result.best_state)
    assert abs(train.evaluate(result.model, data.val, cfg.block_size) - result.best_val) < 1e-6
