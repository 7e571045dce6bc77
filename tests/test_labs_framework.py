"""The lab mechanism: learner code that hangs, crashes, floods the output or raises on import
becomes failed criteria with the reason, never a crash of z2v; other `z2v check` subjects are
ordinary subcommands; criteria can warn or need others; one cause behind many failures is
named once."""

from __future__ import annotations

import json
import sys
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


def short_limits_first(check, reached, limits=(8, 25)):
    """Run CHECK(timeout_s) with the shortest limit that lets the hang be reached: a hang test
    waits out its whole limit, and the lab's setup (torch's import) needs over 10 s on a loaded
    2-core machine but ~2 s on a quiet one. REACHED(result) says the limit did not stop the
    check before the code under test ran; the test then asserts on the last result, as before."""
    for limit in limits:
        t0 = time.perf_counter()
        result = check(limit)
        assert time.perf_counter() - t0 < limit + 35  # stopped at the limit, not long after
        if reached(result):
            break
    return result


def test_hang_at_import_is_stopped_at_the_time_limit(home, tmp_path):
    path = learner(tmp_path, "while True:\n    pass\n")
    result = short_limits_first(lambda limit: run_check(LAB, path, timeout_s=limit, only=["output shapes"]),
                                lambda r: "did not finish" in crit(r, "imports")["detail"])
    assert result.timed_out and not result.passed
    imp = crit(result, "imports")
    assert "did not finish" in imp["detail"] and "__main__" in imp["detail"]
    assert "not run" in crit(result, "output shapes")["detail"]


def test_hang_inside_a_criterion_keeps_earlier_results(home, tmp_path):
    source = REFERENCE.replace(
        "    def generate(self,", "    def generate(self, *a, **k):\n        while True:\n"
        "            pass\n\n    def _unused(self,")
    path = learner(tmp_path, source)
    result = short_limits_first(
        lambda limit: run_check(LAB, path, timeout_s=limit, only=["output shapes", "generate"]),
        lambda r: crit(r, "output shapes")["passed"], limits=(8, 15))
    assert result.timed_out
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
    assert set(report) == {"lab", "passed", "criteria", "metrics", "refused", "isolation"}
    assert report["refused"] is None and report["isolation"]
    assert report["criteria"][0]["name"] == "imports" and not report["criteria"][0]["passed"]
    assert "SystemExit" in report["criteria"][0]["detail"]


def test_check_vllm_reads_the_database_given_with_db(z2v, home, tmp_path):
    """The check process never opens the store: `z2v --db X check vllm` sees X's comparison
    (the parent reads it and passes it in), not the default database's."""
    sys.path.insert(0, str(Path(__file__).parent))
    from vllm_fakes import FakeServer

    from zero2vllm.tracker.store import Store

    other = tmp_path / "other.db"
    lab_dir = tmp_path / "lab"
    lab_dir.mkdir()
    with FakeServer(naive=True) as naive, FakeServer() as vllm:
        z2v("--db", str(other), "compare", "--naive", naive.url, "--vllm", vllm.url,
            "--concurrency", "1", "--requests", "2", "--output-len", "4", "--out", str(tmp_path / "cmp"))
        (lab_dir / "url.txt").write_text(vllm.url + "\n")
        out = z2v("--db", str(other), "check", "vllm", str(lab_dir), expect=None).output
        assert "PASS  comparison with your naive API recorded" in out, out
        # the default database has no comparison, and the check with it says so
        out = z2v("check", "vllm", str(lab_dir), expect=1).output
        assert "FAIL  comparison with your naive API recorded" in out
    runs = Store.open(other).lab_runs("vllm")
    assert [r["kind"] for r in runs] == ["compare", "check"] and runs[-1]["passed"]


def test_a_passing_check_closes_the_named_item_through_the_journal(z2v, home):
    from zero2vllm.tracker import evidence
    from zero2vllm.tracker import progress
    from zero2vllm.tracker.store import Store

    store = Store.open(home / "zero2vllm.db")
    plan = progress.load_plan(store)
    failing = evidence.record(store, {"lab": "transformer", "kind": "check", "passed": False})
    assert failing.closed is None and store.state("w1.working-character-level") is None
    # a training run is evidence too, but only a full passing check closes the item
    assert evidence.record(store, {"lab": "transformer", "kind": "run", "passed": True}).closed is None
    passed = evidence.record(store, {"lab": "transformer", "kind": "check", "passed": True,
                                     "criteria": [{"name": "heads split", "passed": True,
                                                   "status": "warn", "detail": "could not check: x"}]})
    assert passed.closed == "w1.working-character-level"
    assert store.state("w1.working-character-level").status == "done"
    assert store.last_change()["summary"] == "done w1.working-character-level"
    [st] = [s for s in evidence.statuses(store, plan) if s.id == "transformer"]
    assert st.state == "passed" and st.item_status == "done"
    assert st.as_json()["last_check"]["warnings"] == 1  # the warning is stored with the run
    week = json.loads(z2v("week", "1", "--json").output)
    item = next(i for i in week["items"] if i["id"] == "w1.working-character-level")
    assert item["lab"]["id"] == "transformer" and item["lab"]["state"] == "passed"
    assert "lab transformer: passed" in z2v("week", "1").output
    z2v("undo")
    assert store.state("w1.working-character-level") is None  # undone: back to no state
    with pytest.raises(ValueError, match="unknown evidence fields"):
        evidence.record(store, {"lab": "x", "kind": "check", "passed": True, "score": 1})
    store.close()


def test_a_plan_without_the_labs_item_leaves_it_unlinked(z2v, home, tmp_path):
    plan = tmp_path / "plan.txt"
    plan.write_text("My plan\n\nWeek 1: Basics\nGoal: learn\nHANDS-ON: Build a transformer\n"
                    "Deliverable: A character-level transformer that works\n")
    z2v("plan", "import", str(plan))
    out = z2v("lab", "list").output
    line = next(line for line in out.splitlines() if line.startswith("transformer"))
    assert "unlinked: your plan has no w1.working-character-level" in line  # never guessed
    [lab] = [lab for lab in z2v.json("lab", "list") if lab["id"] == "transformer"]
    assert lab["linked"] is False and lab["plan_item"] == "w1.working-character-level"
    from zero2vllm.tracker import evidence
    from zero2vllm.tracker.store import Store

    store = Store.open(home / "zero2vllm.db")
    assert evidence.record(store, {"lab": "transformer", "kind": "check", "passed": True}).closed is None
    assert all(s.status != "done" for s in store.states().values())
    store.close()


def test_the_untouched_scaffold_gets_one_message_not_one_traceback_per_criterion(z2v, tmp_path):
    import re

    z2v("lab", "init", "transformer", str(tmp_path / "t"))
    result = z2v("check", "transformer", str(tmp_path / "t"), expect=1)
    out = result.output
    found = re.findall(r"fix `[\w.<>]+` \(model\.py:\d+\) first: it raised (\w+); (\d+) criteria depend on it", out)
    assert len(found) == 1 and int(found[0][1]) >= 3, out
    assert out.count("raise NotImplementedError") == 1  # the source line is shown once
    report = json.loads(z2v("check", "transformer", str(tmp_path / "t"), "--json", expect=1).output)
    causes = [c.get("cause") for c in report["criteria"] if c.get("cause")]
    assert causes and all(c["error"] == found[0][0] for c in causes)


def test_the_week_page_shows_each_labs_status_beside_its_item(z2v, home):
    from zero2vllm.tracker import evidence
    from zero2vllm.paths import db_path
    from zero2vllm.tracker.store import Store
    from zero2vllm.web import create_app

    z2v("plan", "start", "--on", "2026-11-23")
    store = Store.open(db_path())
    evidence.record(store, {"lab": "kv-cache", "kind": "check", "passed": False})
    evidence.record(store, {"lab": "transformer", "kind": "check", "passed": True, "criteria": [
        {"name": "heads split", "passed": True, "status": "warn", "detail": "could not check: x"}]})
    store.close()
    client = create_app(db_path()).test_client()
    html = client.get("/week/2").get_data(as_text=True)
    assert "lab kv-cache: failing" in html and "lab serving-api: not started" in html
    labs_page = client.get("/labs").get_data(as_text=True)
    assert '<td class="mark">WARN</td><td>heads split</td>' in labs_page


def test_warnings_and_not_run_criteria_are_shown_as_such(capsys):
    from zero2vllm.commands.labs import _echo_criterion

    seen: set = set()
    cause = {"error": "NotImplementedError", "file": "/x/model.py", "line": 4, "func": "GPT.__init__"}
    _echo_criterion({"name": "heads split", "passed": True, "status": "warn",
                     "detail": "could not check: no route"}, 1.0, seen)
    _echo_criterion({"name": "output shapes", "passed": False, "status": "fail", "cause": cause,
                     "detail": "your code raised NotImplementedError: TODO\n  at /x/model.py:4"}, 0.1, seen)
    _echo_criterion({"name": "causality", "passed": False, "status": "fail", "cause": cause,
                     "detail": "your code raised NotImplementedError: TODO\n  at /x/model.py:4"}, 0.1, seen)
    _echo_criterion({"name": "generate", "passed": False, "status": "not run",
                     "detail": "not run: needs 'output shapes'"}, 0, seen)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["WARN", "heads", "split"] and "could not check: no route" in out[1]
    assert sum("at /x/model.py:4" in line for line in out) == 1  # the traceback once
    assert "(the same NotImplementedError in `GPT.__init__` as above)" in out[-2]
    assert out[-1].split()[0] == "FAIL" and "(not run: needs 'output shapes')" in out[-1]


def test_shared_causes_follow_needs():
    from zero2vllm.labs.framework import cause_message, shared_causes

    cause = {"error": "NotImplementedError", "file": "/x/model.py", "line": 4, "func": "GPT.__init__"}
    crits = [{"name": "imports", "passed": True},
             {"name": "a", "passed": False, "cause": cause},
             {"name": "b", "passed": False, "status": "not run", "blocked_by": ["a"]},
             {"name": "c", "passed": False, "status": "not run", "blocked_by": ["b"]},
             {"name": "d", "passed": False, "detail": "a CheckFailed of its own"}]
    [(got, names)] = shared_causes(crits)
    assert names == ["a", "b", "c"]
    assert cause_message(got, names) == ("fix `GPT.__init__` (model.py:4) first: it raised "
                                         "NotImplementedError; 3 criteria depend on it")
    assert shared_causes(crits[:2]) == []  # one failure is shown as it is
