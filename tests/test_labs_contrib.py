"""The contribution labs that judge a branch (repro, own-test, pr-ready), on vLLM-shaped git
repositories built in the test (tests/contrib_fixture.py): each correct state passes, each
mistake fails on the criterion that names it. No network: pre-commit's hook is a local pygrep."""

from __future__ import annotations

import pytest

import contrib_fixture as cf
from zero2vllm.labs import get_lab
from zero2vllm.labs.check import run_check


@pytest.fixture(autouse=True)
def _isolated(home, tmp_path_factory, monkeypatch):
    # pre-commit keeps its store in ~/.cache unless told otherwise
    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path_factory.getbasetemp() / "pre-commit"))


def check(lab_id, state, tmp_path, only=None):
    path = getattr(cf, state)(tmp_path)
    result = run_check(get_lab(lab_id), path, only=only)
    return result, {c["name"]: c for c in result.criteria}


def test_repro_passes_on_fail_then_pass(tmp_path):
    result, crit = check("repro", "state_repro_fixed", tmp_path)
    assert result.passed, result.criteria
    assert result.metrics["cases"] == [{"test": "tests/test_utils.py::test_cdiv_rounds_up",
                                        "base": "failed", "head": "passed"}]
    assert "fail→pass" in crit["fail first, then pass"]["detail"]


def test_repro_without_a_test_or_commits_says_what_to_do(tmp_path):
    _, crit = check("repro", "state_repro_no_test", tmp_path / "a")
    assert "adds or changes no test" in crit["regression test"]["detail"]
    assert crit["fail first, then pass"]["detail"].startswith("not run")
    _, crit = check("repro", "state_no_branch", tmp_path / "b")
    assert "no commits" in crit["branch"]["detail"]


def test_repro_leaves_the_learners_tree_alone(tmp_path):
    repo = cf.state_repro_fixed(tmp_path)
    before = cf.git(repo, "status", "--porcelain")
    assert run_check(get_lab("repro"), repo).passed
    assert cf.git(repo, "status", "--porcelain") == before
    assert cf.git(repo, "worktree", "list").count("\n") == 1  # the throw-away worktrees are gone


def test_own_test_passes_a_test_that_kills_the_lru_mutation(tmp_path):
    result, crit = check("own-test", "state_own_test_good", tmp_path)
    assert result.passed, result.criteria
    assert result.metrics["mutations"] == {"lru-eviction": "killed"}


def test_own_test_unsigned_names_a_foreign_sign_off(tmp_path):
    repo = cf.upstream(tmp_path)
    cf.add_file(repo, cf.LRU_TEST)
    cf.git(repo, "add", "-A")
    cf.git(repo, "-c", "user.name=Ada", "-c", "user.email=ada@example.com", "commit", "-q", "-m",
           "[Test] x\n\nSigned-off-by: Someone Else <else@example.com>")
    result = run_check(get_lab("own-test"), repo, only=["branch", "signed off"])
    detail = result.criteria[-1]["detail"]
    assert "signed off by else@example.com, but the author is ada@example.com" in detail


def test_pr_ready_passes_a_complete_dossier(tmp_path):
    result, _ = check("pr-ready", "state_pr_ready_good", tmp_path)
    assert result.passed, result.criteria
    assert result.metrics["test_plan_counts"] == {"passed": 1}


# Each mistake of the repro, own-test and pr-ready labs failing on its criterion, with its
# message, is a dev-check row (tests/lab_cases/<lab>/cases.toml, run by tests/test_lab_devcheck.py
# on the same fixture states); the tests here assert what a row does not.


def test_pr_ready_user_facing_change_names_the_file(tmp_path):
    result, crit = check("pr-ready", "state_pr_ready_user_facing", tmp_path,
                         only=["branch", "PR.md", "test plan runs", "docs touched"])
    assert not result.passed and "vllm/entrypoints/cli.py" in crit["docs touched"]["detail"]


def test_pr_ready_mismatch_shows_both_counts(tmp_path):
    _, crit = check("pr-ready", "state_pr_ready_result_mismatch", tmp_path,
                    only=["branch", "PR.md", "test plan runs", "test result matches"])
    detail = crit["test result matches"]["detail"]
    assert "expected: 1 passed" in detail and "got: 2 passed" in detail


def test_pr_ready_without_pr_md_says_to_init(tmp_path):
    repo = cf.state_repro_fixed(tmp_path)
    result = run_check(get_lab("pr-ready"), repo, only=["branch", "PR.md", "title tags"])
    crit = {c["name"]: c for c in result.criteria}
    assert "z2v lab init pr-ready" in crit["PR.md"]["detail"]
    assert crit["title tags"]["detail"].startswith("not run")


def test_dev_setup_passes_and_keeps_head_and_counts(tmp_path):
    result, crit = check("dev-setup", "state_dev_setup_good", tmp_path)
    assert result.passed, result.criteria
    repo = tmp_path / "vllm"
    assert result.metrics["head"] == cf.git(repo, "rev-parse", "HEAD").strip()
    assert result.metrics["counts"]["passed"] == 2 and result.metrics["counts"]["failed"] == 0
    assert result.metrics["tests"] == ["tests/v1/core/test_kv_cache_utils.py"]


@pytest.mark.parametrize("state, criterion, message", [
    ("state_dev_setup_not_editable", "editable install", "cannot find vllm"),
    ("state_dev_setup_no_hook", "pre-commit installed", "no pre-commit git hook"),
    ("state_dev_setup_own_hooks", "pre-commit installed", "differs from the committed one"),
    ("state_dev_setup_failing_test", "unit tests", "1 of 2 tests failed"),
])
def test_dev_setup_mistakes(tmp_path, state, criterion, message):
    result, crit = check("dev-setup", state, tmp_path)
    assert [n for n, c in crit.items() if not c["passed"] and not c["detail"].startswith("not run")] == [criterion]
    assert message in crit[criterion]["detail"]


def test_dev_setup_editable_elsewhere_is_named(tmp_path, z2v):
    """vllm importable, but from another folder than the clone: not an editable install of it."""
    other = cf.upstream(tmp_path / "other")
    repo = cf.state_dev_setup_not_editable(tmp_path / "mine")
    python = cf.editable_venv(other)
    z2v("contrib", "init", str(repo), "--python", str(python))
    # `z2v check` passes the stored --python in (the check process never opens the store)
    out = z2v("check", "dev-setup", str(repo), "--only", "clone,editable install", expect=1).output
    assert f"not from the clone {repo}" in out and str(python) in out


def test_fixture_cases_name_real_builders_and_criteria():
    """tests/lab_cases/<lab>/cases.toml of the repository-state labs: every builder exists and
    every criterion is one the lab has (dev-check builds and runs them)."""
    import importlib
    import tomllib
    from pathlib import Path

    from zero2vllm.labs.framework import criteria_of

    seen = 0
    for cases in sorted((Path(__file__).parent / "lab_cases").glob("*/cases.toml")):
        doc = tomllib.loads(cases.read_text())
        if doc.get("kind") != "fixture":
            continue
        lab = get_lab(cases.parent.name)
        names = {c.name for c in criteria_of(importlib.import_module(lab.checks_module).__name__)}
        assert doc["scaffold_fails_on"] in names
        for case in [{"builder": doc["scaffold_builder"]}] + doc.get("correct", []) + doc.get("mistake", []):
            module, func = case["builder"].split(":")
            assert callable(getattr(importlib.import_module(module), func)), case
            assert case.get("criterion", doc["scaffold_fails_on"]) in names, case
            for value in case.get("env", {}).values():
                assert Path(value.replace("{tests}", str(Path(__file__).parent))).is_dir(), value
        seen += 1
    assert seen == 5  # repro, own-test, pr-ready, pr-merged, dev-setup
