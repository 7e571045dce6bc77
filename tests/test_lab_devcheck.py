"""`z2v lab dev-check`: every lab's verdicts against its cases (tests/lab_cases/<lab>), and the
machinery itself, proven on a tiny lab made in a temp dir (a mistake that passes is reported
missed, one caught elsewhere says so, a correct variant that fails is a deviation)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from zero2vllm.labs import all_labs, load_lab
from zero2vllm.labs import devcheck as D

CASES = D.default_cases_dir()
LABS_WITH_CASES = [lab for lab in all_labs() if (CASES / lab).is_dir()]


# Rows another test checks in full, asserting this row's verdict (D.judge) on the same run: the
# transformer's reference trains for ~20 s, and that test checks it through `z2v check`.
ELSEWHERE = {("transformer", "reference"):
             "tests/test_labs_transformer.py::test_reference_passes_every_real_criterion_and_ticks_the_deliverable"}


def case_params() -> list:
    """(lab id, case label) of every case of every lab but ELSEWHERE's: one test item each, so the
    two xdist workers share a long lab's cases instead of one worker running all of them at the end."""
    params = []
    for lab_id in LABS_WITH_CASES:
        cases, requires = D.load_cases(all_labs()[lab_id], CASES / lab_id)
        cases = [c for c in cases if (lab_id, c.label) not in ELSEWHERE]
        # slow (started first, tests/conftest.py): a case that must pass runs every criterion
        # (the transformer's trains), and a real-vLLM one starts vLLM; a mistake stops early
        params += [pytest.param(lab_id, c.label, id=f"{lab_id}: {c.label}",
                                marks=[pytest.mark.slow] if requires or c.fails_on is None else [])
                   for c in cases]
    return params


def real_failures(row) -> list[str]:
    return [c["name"] for c in row.criteria if not c["passed"] and c.get("status") != "not run"]


def trace_step_reference(row) -> None:
    m = row.metrics
    assert m["steps"] >= 3 and m["prompt_tokens"][1] > 32, m  # the long prompt's blocks grow
    assert m["same"], m  # the comparison with zero2vllm's engine ran


def trace_step_forgets_new_blocks(row) -> None:
    # caught by that criterion alone: the hook's other records still agree with vLLM's
    assert real_failures(row) == ["block ids agree with the KV manager"], row.criteria


def serving_api_reference(row) -> None:
    assert row.metrics["rss_bytes"] > 50 * 2**20, row.metrics  # /metrics reads the app's own RSS


# What some rows prove beyond their verdict, asserted on the same check instead of a second one:
# a trace-step row is a real vLLM run (a minute or more on 2 busy cores).
ALSO = {("trace-step", "reference"): trace_step_reference,
        ("trace-step", "mistake forgets-new-blocks"): trace_step_forgets_new_blocks,
        ("serving-api", "reference"): serving_api_reference}
CASE_PARAMS = case_params()


def test_every_extra_assertion_names_a_case():
    assert set(ALSO) <= {tuple(p.values) for p in CASE_PARAMS}
    every = {(lab_id, c.label) for lab_id in LABS_WITH_CASES
             for c in D.load_cases(all_labs()[lab_id], CASES / lab_id)[0]}
    assert set(ELSEWHERE) <= every and not set(ELSEWHERE) & {tuple(p.values) for p in CASE_PARAMS}


@pytest.mark.parametrize("lab_id, label", CASE_PARAMS)
def test_dev_check_of_each_lab_passes(home, lab_id, label, monkeypatch):
    """The gate CI runs, one case at a time: the scaffold fails where it should, every correct
    solution passes and every known mistake fails on the criterion that names it."""
    from zero2vllm.paths import db_path
    from zero2vllm.tracker import evidence
    from zero2vllm.tracker.store import Store

    # The week-3 labs compare against traces recorded from real vLLM here: the live differential
    # (1,000 fresh traces) is tests/test_labs_week3_*.py's, and per case it would cost minutes.
    monkeypatch.setenv("Z2V_LAB_ORACLE", "recorded")
    lab = all_labs()[lab_id]
    cases, requires = D.load_cases(lab, CASES / lab_id)
    case = next(c for c in cases if c.label == label)
    skip = D.vllm_skip_reason(requires) if requires else None
    # the inputs `z2v lab dev-check` passes: what the lab reads from the (fresh) store
    row = D.case_row(lab, case, requires, skip, inputs=evidence.check_inputs(Store.open(db_path()), lab))
    if row.verdict == "skipped":  # requires = "vllm", none here
        pytest.skip(row.got)
    assert row.verdict == "ok", f"{row.case.label}: {row.verdict} ({row.got}) {row.detail}"
    if (lab_id, label) in ALSO:
        ALSO[lab_id, label](row)


def test_the_cli_gate_runs_a_whole_lab(z2v):
    """`z2v lab dev-check LAB --json`, as a learner or CI runs it, on a quick lab: one row per
    case in load_cases' order, each ok, and the report passed (exit 0)."""
    report = json.loads(z2v("lab", "dev-check", "dev-setup", "--json", "--jobs", "2").output)
    (lab,) = report["labs"]
    cases, _ = D.load_cases(all_labs()["dev-setup"], CASES / "dev-setup")
    assert [r["case"] for r in lab["rows"]] == [c.label for c in cases]
    assert report["passed"] and all(r["verdict"] == "ok" for r in lab["rows"]), lab["rows"]
    assert lab["deviations"] == 0 and lab["caught"] == lab["mistakes"] == len(cases) - 2


# -- the machinery, on a tiny lab ------------------------------------------------------------------
CHECKS = '''
from zero2vllm.labs.framework import CheckFailed, CheckWarning, criterion

@criterion("defines add")
def defines(ctx):
    if not callable(getattr(ctx.module, "add", None)):
        raise CheckFailed("no function add")

@criterion("adds", needs=("defines add",))
def adds(ctx):
    got = ctx.module.add(2, 3)
    if got != 5:
        raise CheckFailed("add(2, 3) is not the sum", expected="5", got=repr(got))

@criterion("adds floats", needs=("adds",))
def floats(ctx):
    got = ctx.module.add(0.5, 0.25)
    if got != 0.75:
        raise CheckFailed("add(0.5, 0.25) is wrong for floats", got=repr(got))

@criterion("no side effects")
def pure(ctx):
    raise CheckWarning("could not check: no route to side effects in this tiny lab")
'''


def make_lab(root: Path, name: str) -> Path:
    """A lab package NAME under ROOT, and its cases folder; returns the cases folder."""
    pkg = root / name
    (pkg / "scaffold").mkdir(parents=True)
    (pkg / "reference").mkdir()
    (pkg / "__init__.py").write_text(
        "from zero2vllm.labs import Lab\n"
        "LAB = Lab(id='tiny', title='Tiny', week=1, entry='solution.py', time_limit_s=60)\n")
    (pkg / "checks.py").write_text(CHECKS)
    (pkg / "scaffold" / "solution.py").write_text(
        "def add(a, b):\n    raise NotImplementedError('TODO: add')\n")
    (pkg / "reference" / "solution.py").write_text("def add(a, b):\n    return a + b\n")
    cases = root / "cases" / "tiny"
    (cases / "correct" / "via-sum").mkdir(parents=True)
    (cases / "correct" / "via-sum" / "solution.py").write_text(
        "def add(a, b):\n    return sum((a, b))\n")
    (cases / "correct" / "wrong-but-called-correct").mkdir()
    (cases / "correct" / "wrong-but-called-correct" / "solution.py").write_text(
        "def add(a, b):\n    return int(a) + int(b)\n")
    (cases / "mistakes" / "no-add").mkdir(parents=True)
    (cases / "mistakes" / "no-add" / "solution.py").write_text("def plus(a, b):\n    return a + b\n")
    (cases / "cases.toml").write_text(textwrap.dedent('''
        scaffold_fails_on = "adds"

        [[mistake]]
        name = "subtracts"
        criterion = "adds"
        message = "not the sum"
        why = "right"
        [[mistake.edit]]
        file = "solution.py"
        old = "a + b"
        new = "a - b"

        [[mistake]]
        name = "rounds"
        criterion = "adds"
        message = "sum"
        why = "caught by adds floats, not adds"
        [[mistake.edit]]
        file = "solution.py"
        old = "a + b"
        new = "round(a) + round(b)"

        [[mistake]]
        name = "swapped"
        criterion = "adds"
        message = "sum"
        why = "not a mistake at all: b + a is right, so no criterion fails"
        [[mistake.edit]]
        file = "solution.py"
        old = "a + b"
        new = "b + a"

        [[mistake]]
        name = "wrong-regex"
        criterion = "adds"
        message = "causal"
        why = "fails on adds, with a message the regex does not match"
        [[mistake.edit]]
        file = "solution.py"
        old = "a + b"
        new = "a * b"

        [[mistake]]
        name = "no-add"
        dir = "mistakes/no-add"
        criterion = "adds"
        message = "."
        why = "adds is not run: it needs defines add"
    '''))
    return cases


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    name = f"z2v_tiny_lab_{tmp_path.name.replace('-', '_')}"
    cases = make_lab(tmp_path, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield load_lab(name), cases
    for mod in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[mod]


def test_each_row_gets_the_verdict_it_deserves(tiny, home):
    lab, cases = tiny
    rows = {r.case.label: r for r in D.dev_check(lab, cases, jobs=2)}
    verdicts = {k: r.verdict for k, r in rows.items()}
    assert verdicts == {
        "scaffold": "ok", "reference": "ok", "correct via-sum": "ok",
        "correct wrong-but-called-correct": "failed",
        "mistake subtracts": "ok", "mistake rounds": "caught by another",
        "mistake swapped": "missed", "mistake wrong-regex": "wrong message",
        "mistake no-add": "caught by another",
    }
    assert rows["mistake rounds"].got == "caught by adds floats"
    assert rows["mistake no-add"].got == "caught by defines add"
    assert "adds floats" in rows["correct wrong-but-called-correct"].detail
    t = D.tally(list(rows.values()))
    assert (t["mistakes"], t["caught"], t["caught_by_another"], t["missed"]) == (5, 1, 2, 1)
    assert t["deviations"] == 5


def test_stopping_early_keeps_the_verdict_of_a_full_check(tiny, home):
    """A mistake stops after its named criterion fails; the criteria up to it are the full
    check's, and the rest are reported not run (never passed)."""
    from zero2vllm.labs.check import run_check

    lab, cases = tiny
    case = next(c for c in D.load_cases(lab, cases)[0] if c.name == "subtracts")
    target = D.materialise(case, home / "subtracts")
    full = run_check(lab, target)
    early = run_check(lab, target, stop_after="adds")
    assert full.criteria[:3] == early.criteria[:3]
    assert early.criteria[3]["status"] == "not run" and not early.passed
    warn = full.criteria[-1]
    assert warn["status"] == "warn" and warn["passed"] and warn["detail"].startswith("could not check")


def test_bad_cases_are_one_line_errors(tiny, z2v, tmp_path):
    lab, cases = tiny
    toml = cases / "cases.toml"
    toml.write_text(toml.read_text().replace('old = "a + b"\nnew = "a - b"', 'old = "nope"\nnew = "x"'))
    with pytest.raises(D.DevCheckError, match="occurs 0 times"):
        D.dev_check(lab, cases)
    toml.write_text('scaffold_fails_on = "adds"\n[[mistake]]\nname = "x"\n')
    with pytest.raises(D.DevCheckError, match="needs criterion, message"):
        D.load_cases(lab, cases)
    out = z2v("lab", "dev-check", "--cases", str(tmp_path / "nowhere"), expect=2).output
    assert "no lab cases at" in out and "Traceback" not in out


def test_rows_that_need_real_vllm_are_skipped_never_passed(z2v, monkeypatch):
    """Without Z2V_TEST_VLLM=1, or with it but no `z2v vllm serve` running (CI: the end-to-end
    test checks that lab against real vLLM), the vllm lab's reference is skipped."""
    if not (CASES / "vllm").is_dir():
        pytest.skip("no vllm cases")
    for env in (None, "1"):
        if env:
            monkeypatch.setenv("Z2V_TEST_VLLM", env)
        else:
            monkeypatch.delenv("Z2V_TEST_VLLM", raising=False)
        rows = json.loads(z2v("lab", "dev-check", "vllm", "--json").output)["labs"][0]["rows"]
        ref = next(r for r in rows if r["kind"] == "reference")
        assert ref["verdict"] == "skipped" and ref["got"].startswith("skipped: ")
        assert (D.VLLM_SKIP if env is None else D.VLLM_NOT_SERVING) == ref["got"]
