"""code-map: symbols resolved in an installed vLLM by the AST and checked for what they do.
Without vLLM the tests use a vLLM-shaped source tree on PYTHONPATH (tests/contrib_fixture.py);
with Z2V_TEST_VLLM=1 the same cases run against the real vLLM 0.32.0."""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from pathlib import Path

import pytest

import contrib_fixture as cf
from zero2vllm.labs import get_lab
from zero2vllm.labs.check import run_check
from zero2vllm.tracker.store import Store

LAB = get_lab("code-map")
CASES = Path(__file__).parent / "lab_cases" / "code-map"


@pytest.fixture
def fake_vllm(home, tmp_path, monkeypatch):
    """The fixture tree as 'the installed vLLM': found by find_spec through PYTHONPATH."""
    tree = tmp_path / "src"
    for rel, text in cf.FILES.items():
        if rel.startswith("vllm/"):
            cf.write(tree, rel, text)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("ZERO2VLLM_VLLM_VENV", str(tmp_path / "no-venv"))
    return tree


def answers(tmp_path: Path, edits=()) -> Path:
    folder = tmp_path / "code-map"
    shutil.copytree(LAB.reference_dir, folder, dirs_exist_ok=True)
    file = folder / "code-map.toml"
    text = file.read_text()
    for edit in edits:
        assert text.count(edit["old"]) == 1, edit
        text = text.replace(edit["old"], edit["new"])
    file.write_text(text)
    return folder


def mistakes():
    return tomllib.loads((CASES / "cases.toml").read_text())["mistake"]


def failed(result) -> dict[str, str]:
    return {c["name"]: c["detail"] for c in result.criteria if not c["passed"]}


def test_reference_passes_on_a_vllm_shaped_tree(fake_vllm, tmp_path):
    result = run_check(LAB, answers(tmp_path))
    assert result.passed, result.criteria
    assert result.metrics["vllm_version"] == "0.32.0"


def test_scaffold_says_what_is_todo(fake_vllm):
    result = run_check(LAB, LAB.scaffold_dir)
    bad = failed(result)
    assert "still TODO: token_budget" in bad["code-map.toml"]
    assert bad["token_budget"].startswith("not run")


@pytest.mark.parametrize("case", mistakes(), ids=lambda c: c["name"])
def test_each_mistake_fails_on_its_criterion(fake_vllm, tmp_path, case):
    bad = failed(run_check(LAB, answers(tmp_path, case["edit"])))
    assert list(bad) == [case["criterion"]], bad
    assert re.search(case["message"], bad[case["criterion"]], re.I), bad


def test_predictions_are_revealed_against_what_the_code_does(fake_vllm, z2v, home, tmp_path):
    z2v("contrib", "predict", "code-map", "token_budget", "vllm/v1/core/sched/scheduler.py::Scheduler.schedule")
    z2v("contrib", "predict", "code-map", "block_hash_chain", "vllm/v1/core/block_pool.py::BlockPool.free_blocks")
    out = z2v("check", "code-map", str(answers(tmp_path)), "--json").output
    result = json.loads(out)
    assert result["passed"]
    assert result["metrics"]["predictions"] == {"token_budget": True, "block_hash_chain": False}
    store = Store.open(home / "zero2vllm.db")
    rows = {r["name"]: dict(r) for r in store.conn.execute("SELECT * FROM prediction")}
    store.close()
    assert rows["token_budget"]["answer"].endswith("Scheduler.schedule") and rows["token_budget"]["revealed_at"]
    assert rows["block_hash_chain"]["answer"] is None  # a wrong guess stays a hash
    runs = json.loads(z2v("lab", "list", "--json").output)
    assert next(r for r in runs if r["id"] == "code-map")["state"] == "passed"


def test_a_forged_reveal_is_not_stored(z2v, home):
    """The parent tests each answer the check reports against its hash before storing it."""
    from zero2vllm.commands.labs import _reveal
    from zero2vllm.tracker import contrib_settings

    z2v("contrib", "predict", "code-map", "token_budget", "vllm/a.py::A.b")
    store = Store.open(home / "zero2vllm.db")
    try:
        assert _reveal(store, LAB, {"token_budget": "vllm/x.py::X.y"}) == []
        assert contrib_settings.locked(store, "code-map", "token_budget")["answer"] is None
        assert _reveal(store, LAB, {"token_budget": "vllm/a.py::A.b"}) == ["token_budget"]
        assert contrib_settings.locked(store, "code-map", "token_budget")["answer"] == "vllm/a.py::A.b"
    finally:
        store.close()


def test_no_vllm_anywhere_is_one_line(home, tmp_path, monkeypatch):
    monkeypatch.setenv("ZERO2VLLM_VLLM_VENV", str(tmp_path / "no-venv"))
    bad = failed(run_check(LAB, answers(tmp_path), only=["code-map.toml", "installed vLLM"]))
    assert "no installed vLLM found" in bad["installed vLLM"]


needs_vllm = pytest.mark.skipif(os.environ.get("Z2V_TEST_VLLM") != "1", reason="Z2V_TEST_VLLM=1 runs it")


@pytest.fixture
def real_vllm(home, monkeypatch):
    """vLLM's venv: $ZERO2VLLM_VLLM_VENV (CI), else the user's `z2v vllm install` location."""
    import platformdirs

    venv = os.environ.get("ZERO2VLLM_VLLM_VENV") or str(
        Path(platformdirs.user_data_dir("zero2vllm", appauthor=False)) / "vllm-venv")
    monkeypatch.setenv("ZERO2VLLM_VLLM_VENV", venv)


@pytest.mark.vllm
@needs_vllm
def test_real_vllm_reference_and_other_correct_answers(real_vllm, tmp_path):
    result = run_check(LAB, answers(tmp_path))
    assert result.passed, result.criteria
    assert result.metrics["vllm_version"].startswith("0.32")
    for variant in (CASES / "correct").iterdir():
        result = run_check(LAB, variant)
        assert result.passed, (variant.name, failed(result))


@pytest.mark.vllm
@needs_vllm
@pytest.mark.parametrize("case", mistakes(), ids=lambda c: c["name"])
def test_real_vllm_rejects_each_mistake(real_vllm, tmp_path, case):
    bad = failed(run_check(LAB, answers(tmp_path, case["edit"])))
    assert list(bad) == [case["criterion"]], bad
    assert re.search(case["message"], bad[case["criterion"]], re.I), bad
