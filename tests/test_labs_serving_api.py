"""The serving-api lab: the scaffold and typical mistakes fail, named (the reference passing is
dev-check's, tests/test_lab_devcheck.py)."""

from __future__ import annotations

import json

import pytest
from model_cache import smollm2_dir, tiny_model_dir  # noqa: F401

pytest.importorskip("torch")
pytest.importorskip("flask")

from zero2vllm.labs import get_lab  # noqa: E402
from zero2vllm.labs.check import run_check  # noqa: E402

LAB = get_lab("serving-api")
REFERENCE = LAB.reference_dir / "app.py"


def mutant(tmp_path, old: str, new: str):
    src = REFERENCE.read_text()
    assert old in src, old
    (tmp_path / "app.py").write_text(src.replace(old, new))
    return tmp_path


def by_name(result):
    return {c["name"]: c for c in result.criteria}


# The reference passing every criterion (and /metrics reporting its RSS) is dev-check's
# reference row, tests/test_lab_devcheck.py: one full check of it, not two. So is each mistake
# in tests/lab_cases/serving-api/cases.toml (the text repeating the prompt among them); the
# tests here assert what a dev-check row does not: details of several criteria at once.


def test_scaffold_fails(home, tiny_model_dir):
    crit = by_name(run_check(LAB, LAB.scaffold_dir, fast=True))
    assert crit["imports"]["passed"] and crit["app starts and answers /health"]["passed"]
    assert "did not get a 200" in crit["POST /generate returns the greedy continuation"]["detail"]
    assert "19 of 19 bad requests" in crit["bad requests get a 400 with a JSON error"]["detail"]
    assert not crit["survives a fuzz run of malformed requests"]["passed"]
    for name in ("concurrent requests each get their own answer", "GET /metrics speaks Prometheus",
                 "temperature changes the output as it should"):
        assert crit[name]["status"] == "not run", crit[name]


def test_the_judge_model_shows_mistakes(home, tiny_model_dir):
    """What the criteria rely on: the judge model gives each prompt its own continuation, and
    some end on EOS before max_new_tokens (a count of max_new_tokens would then be wrong)."""
    from types import SimpleNamespace

    from zero2vllm.labs.serving_api import checks
    from zero2vllm.labs.serving_api.probe import expected

    ctx = SimpleNamespace(state={}, fast=True)
    answers = [expected(ctx, p, 12) for p in checks.PROMPTS]
    assert len({a[0] for a in answers}) == len(answers)
    assert any(eos and 1 < n < 12 for _, _, n, eos in answers)
    assert any(n == 12 for _, _, n, _ in answers)


def test_unchecked_types_crash(home, tmp_path, tiny_model_dir):
    path = mutant(tmp_path,
                  "if isinstance(max_new, bool) or not isinstance(max_new, int) or not 1 <= max_new <= MAX_NEW_TOKENS:",
                  "if isinstance(max_new, int) and max_new > MAX_NEW_TOKENS:")
    crit = by_name(run_check(LAB, path, fast=True, only=["app starts and answers /health",
                                                         "bad requests get a 400 with a JSON error",
                                                         "survives a fuzz run of malformed requests"]))
    detail = crit["bad requests get a 400 with a JSON error"]["detail"]
    assert "max_new_tokens a string: HTTP 500" in detail and "max_new_tokens 100000" not in detail
    assert not crit["survives a fuzz run of malformed requests"]["passed"]


def test_metrics_without_memory(home, tmp_path, tiny_model_dir):
    path = mutant(tmp_path, 'f"process_resident_memory_bytes {rss}",', "")
    crit = by_name(run_check(LAB, path, fast=True, only=["app starts and answers /health",
                                                         "GET /metrics speaks Prometheus"]))
    assert "process_resident_memory_bytes" in crit["GET /metrics speaks Prometheus"]["detail"]


@pytest.mark.slow
def test_lab_run_benchmarks_the_app(z2v, home, smollm2_dir):
    """`z2v lab run serving-api`: serve the reference with SmolLM2, bench it, keep the evidence."""
    r = z2v("lab", "run", "serving-api", "--steps", "2")
    assert "generate API at http://127.0.0.1" in r.output and "output throughput x" in r.output
    from zero2vllm.tracker.store import Store

    (run,) = Store.open(home / "zero2vllm.db").lab_runs("serving-api", kind="run")
    assert run["passed"] and [lv["concurrency"] for lv in run["metrics"]["levels"]] == [1, 4]
    assert run["metrics"]["peak_rss_bytes"] > 300 * 2**20
    data = json.loads(open(run["artifacts"][0]).read())
    assert all(r["total_output_tokens"] == 16 for r in data["runs"])


def test_lab_init_writes_the_scaffold(z2v, tmp_path):
    r = z2v("lab", "init", "serving-api", str(tmp_path / "api"))
    assert (tmp_path / "api" / "app.py").exists() and (tmp_path / "api" / "README.md").exists()
    assert "z2v check serving-api" in r.output
