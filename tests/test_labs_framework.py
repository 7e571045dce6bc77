"""The lab mechanism: learner code that hangs, crashes, floods the output or raises on import
becomes failed criteria with the reason, never a crash of z2v; other `z2v check` subjects are
ordinary subcommands; criteria can warn or need others; one cause behind many failures is
named once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from zero2vllm.labs import get_lab
from zero2vllm.labs.check import OUTPUT_TAIL, run_check

LAB = get_lab("transformer")
REFERENCE = (LAB.reference_dir / "model.py").read_text()


def learner(tmp_path: Path, source: str) -> Path:
    d = tmp_path / "mine"
    d.mkdir()
    (d / "model.py").write_text(source)
    return d


def crit(result, name):
    return next(c for c in result.criteria if c["name"] == name)


def test_raise_on_import_fails_imports_and_skips_the_rest(home, tmp_path):
    result = run_check(LAB, learner(tmp_path, "x = 1\nraise ValueError('boom at import')\n"),
                       only=["output shapes", "causality"])
    assert not result.passed
    imp = crit(result, "imports")
    assert not imp["passed"] and "ValueError: boom at import" in imp["detail"]
    assert "model.py:2" in imp["detail"]
    assert crit(result, "causality")["detail"].startswith("not run")


def test_syntax_error_names_the_line(home, tmp_path):
    result = run_check(LAB, learner(tmp_path, "import torch\ndef broken(:\n"), only=["output shapes"])
    detail = crit(result, "imports")["detail"]
    assert "syntax error" in detail and "model.py:2" in detail


def test_hang_at_import_is_stopped_at_the_time_limit(home, tmp_path):
    t0 = time.perf_counter()
    result = run_check(LAB, learner(tmp_path, "while True:\n    pass\n"), timeout_s=8,
                       only=["output shapes"])
    assert time.perf_counter() - t0 < 30
    assert result.timed_out and not result.passed
    imp = crit(result, "imports")
    assert "did not finish" in imp["detail"] and "__main__" in imp["detail"]
    assert "not run" in crit(result, "output shapes")["detail"]


def test_hang_inside_a_criterion_keeps_earlier_results(home, tmp_path):
    source = REFERENCE.replace(
        "    def generate(self,", "    def generate(self, *a, **k):\n        while True:\n"
        "            pass\n\n    def _unused(self,")
    result = run_check(LAB, learner(tmp_path, source), timeout_s=15,
                       only=["output shapes", "generate"])
    assert crit(result, "output shapes")["passed"]
    gen = crit(result, "generate")
    assert not gen["passed"] and "did not finish" in gen["detail"]


def test_interpreter_exit_is_a_failed_criterion(home, tmp_path):
    source = REFERENCE.replace("        self.config = config\n",
                               "        self.config = config\n        import os; os._exit(7)\n", 1)
    result = run_check(LAB, learner(tmp_path, source), only=["output shapes"])
    shapes = crit(result, "output shapes")
    assert not shapes["passed"] and "exit code 7" in shapes["detail"]


def test_a_flood_of_output_is_cut_and_does_not_block(home, tmp_path):
    source = REFERENCE + "\nfor i in range(300000):\n    print('spam', i)\n"
    result = run_check(LAB, learner(tmp_path, source), only=["output shapes"])
    assert result.passed, result.criteria
    assert len(result.output_tail) < OUTPUT_TAIL + 200 and "earlier bytes of output cut" in result.output_tail


def test_exceptions_in_learner_code_point_at_the_learner_line(home, tmp_path):
    source = REFERENCE.replace("        B, T = idx.size()\n",
                               "        B, T = idx.size()\n        1 / 0\n", 1)
    result = run_check(LAB, learner(tmp_path, source), only=["output shapes"])
    detail = crit(result, "output shapes")["detail"]
    assert "ZeroDivisionError" in detail and str(tmp_path / "mine" / "model.py") in detail


def test_missing_file_says_how_to_start(home, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_check(LAB, empty, only=["output shapes"])
    assert "z2v lab init" in crit(result, "imports")["detail"]


def test_check_dispatches_other_subjects_by_name(z2v, tmp_path):
    """`z2v check summary` is an ordinary subcommand of the check group (a static table, no
    registry), and `z2v check LAB` still reaches the lab check."""
    note = tmp_path / "notes.md"
    note.write_text("too short\n")
    out = z2v("check", "summary", str(note), "--week", "1", expect=1).output
    assert "words" in out
    assert "summary" in z2v("check", "--help").output
    assert "no lab 'nope'" in z2v("check", "nope", expect=2).output


def test_every_lab_names_an_item_of_the_bundled_plan(z2v, home):
    from zero2vllm.tracker import evidence
    from zero2vllm.tracker import progress
    from zero2vllm.labs import all_labs
    from zero2vllm.tracker.store import Store

    store = Store.open(home / "zero2vllm.db")
    plan = progress.load_plan(store)
    for lab in all_labs().values():
        item = evidence.plan_item(lab, plan)
        assert item is not None and item.week == lab.week, lab.id
    store.close()


def test_lab_list_without_runs(z2v):
    out = z2v("lab", "list").output
    assert out.splitlines()[0].split()[:3] == ["lab", "week", "title"]
    line = next(line for line in out.splitlines() if line.startswith("transformer"))
    assert "not started" in line


def test_json_output_of_a_failing_check_has_the_documented_shape(z2v, tmp_path):
    d = learner(tmp_path, "raise SystemExit(3)\n")
    report = json.loads(z2v("check", "transformer", str(d), "--json", expect=1).output)
    assert set(report) == {"lab", "passed", "criteria", "metrics"}
    assert report["criteria"][0]["name"] == "imports" and not report["criteria"][0]["passed"]
    assert "SystemExit" in report["criteria"][0]["detail"]
