"""`z2v lab dev-check`: are a lab's verdicts right? (rustlings-style, run in CI)

For each lab with cases under `tests/lab_cases/<lab-id>/` (the convention is in docs/labs.md):
the untouched scaffold must fail on the criterion cases.toml names, the reference and every
`correct/*` variant must pass, and every mistake must fail on its named criterion with a
message matching its regex. Each case is copied into a temp dir and checked by the real
`run_check`, so a verdict here is the verdict `z2v check` gives. To save time a case that must
fail on X stops once X has failed (what comes after cannot change its row); if X passes the
check runs on, so a mistake caught by another criterion, or missed, is still seen.

A lab that checks the state of a repository (the contribution labs) has no files to copy:
its cases.toml says `kind = "fixture"` and each case names a builder, "module:function", a
function of a module beside lab_cases/ (tests/contrib_fixture.py) that makes the state in an
empty folder and returns the path to check; a case's `env` is set for its check process only.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import zero2vllm
from zero2vllm.labs import Lab

CASES_FILE = "cases.toml"
VLLM_SKIP = "skipped: needs real vLLM (Z2V_TEST_VLLM=1)"
REQUIRES = ("vllm", "vllm-server")  # real vLLM installed; a real vLLM serving
VLLM_NOT_SERVING = ("skipped: no vLLM is serving (start `z2v vllm serve` and run `z2v compare`; "
                    "tests/test_vllm_e2e.py checks this lab end to end)")


class DevCheckError(ValueError):
    """A cases dir that cannot be used: one line saying what is wrong where."""


def default_cases_dir() -> Path:
    """<repo>/tests/lab_cases of the source checkout this package runs from."""
    return Path(zero2vllm.__file__).resolve().parents[2] / "tests" / "lab_cases"


@dataclass
class Case:
    kind: str  # scaffold, reference, correct, mistake
    name: str
    source: Path | None  # the folder copied before edits (None for a fixture case)
    edits: list[dict] = field(default_factory=list)
    fails_on: str | None = None  # None: must pass
    message: str | None = None  # regex the failure detail must match
    why: str = ""
    builder: Callable[[Path], Path] | None = None  # a fixture case: makes the state to check
    env: dict[str, str] = field(default_factory=dict)  # set for this case's check process

    @property
    def label(self) -> str:
        return self.kind if self.kind in ("scaffold", "reference") else f"{self.kind} {self.name}"


@dataclass
class Row:
    case: Case
    verdict: str  # ok, caught by another, missed, wrong message, failed, skipped
    got: str  # what happened, in a few words
    detail: str = ""
    seconds: float = 0.0
    criteria: list[dict] = field(default_factory=list)  # the check's, for callers (not in as_json)
    metrics: dict = field(default_factory=dict)

    @property
    def deviation(self) -> bool:
        return self.verdict not in ("ok", "skipped")

    def as_json(self) -> dict:
        c = self.case
        return {"case": c.label, "kind": c.kind, "name": c.name, "expected_fail_on": c.fails_on,
                "why": c.why, "verdict": self.verdict, "got": self.got, "detail": self.detail,
                "seconds": self.seconds}


def load_cases(lab: Lab, folder: Path) -> tuple[list[Case], str | None]:
    """The cases of LAB in FOLDER (its tests/lab_cases/<id>), and what they require (REQUIRES)."""
    file = folder / CASES_FILE
    try:
        spec = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DevCheckError(f"{file} is missing; see docs/labs.md for the cases convention") from None
    except tomllib.TOMLDecodeError as exc:
        raise DevCheckError(f"{file}: {exc}") from None
    if not spec.get("scaffold_fails_on"):
        raise DevCheckError(f"{file}: set scaffold_fails_on = \"<criterion>\"")
    if spec.get("requires") not in (None, *REQUIRES):
        raise DevCheckError(f"{file}: requires is one of {', '.join(REQUIRES)}")
    if spec.get("kind") == "fixture":
        return fixture_cases(spec, folder), spec.get("requires")
    cases = [Case("scaffold", "scaffold", lab.scaffold_dir, fails_on=spec["scaffold_fails_on"],
                  message=spec.get("scaffold_message")),
             Case("reference", "reference", lab.reference_dir)]
    correct = folder / "correct"
    for d in sorted(correct.iterdir()) if correct.is_dir() else []:
        if d.is_dir():
            cases.append(Case("correct", d.name, d))
    for i, m in enumerate(spec.get("mistake", [])):
        name = m.get("name") or f"#{i + 1}"
        where = f"{file}: mistake {name!r}"
        missing = [k for k in ("name", "criterion", "message") if not m.get(k)]
        if missing:
            raise DevCheckError(f"{where} needs {', '.join(missing)}")
        try:
            re.compile(m["message"])
        except re.error as exc:
            raise DevCheckError(f"{where}: message is not a regex ({exc})") from None
        if m.get("dir"):
            source, edits = folder / m["dir"], []
        else:
            base = m.get("base", "reference")
            source = lab.reference_dir if base == "reference" else folder / base
            edits = list(m.get("edit", []))
            if not edits:
                raise DevCheckError(f"{where} needs dir = ... or at least one [[mistake.edit]]")
        if not source.is_dir():
            raise DevCheckError(f"{where}: {source} is not a folder")
        cases.append(Case("mistake", name, source, edits, m["criterion"], m["message"],
                          m.get("why", "")))
    return cases, spec.get("requires")


def fixture_cases(spec: dict, folder: Path) -> list[Case]:
    """The cases of a `kind = "fixture"` cases.toml: a scaffold builder, `[[correct]]` and
    `[[mistake]]` entries each with a `builder` (and optional `env`); no reference row (a
    repository state has no reference folder: the correct builders are the solutions)."""
    where = folder / CASES_FILE
    if not spec.get("scaffold_builder"):
        raise DevCheckError(f"{where}: a fixture lab needs scaffold_builder = \"module:function\"")
    cases = [Case("scaffold", "scaffold", None, fails_on=spec["scaffold_fails_on"],
                  message=spec.get("scaffold_message"),
                  builder=_builder(spec["scaffold_builder"], folder, where),
                  env=_env(spec.get("scaffold_env", {}), folder, where))]
    if not spec.get("correct"):
        raise DevCheckError(f"{where}: a fixture lab needs at least one [[correct]] builder")
    for kind, entries in (("correct", spec.get("correct", [])), ("mistake", spec.get("mistake", []))):
        for i, m in enumerate(entries):
            name = m.get("name") or f"#{i + 1}"
            need = ["name", "builder"] + (["criterion", "message"] if kind == "mistake" else [])
            missing = [k for k in need if not m.get(k)]
            if missing:
                raise DevCheckError(f"{where}: {kind} {name!r} needs {', '.join(missing)}")
            if kind == "mistake":
                try:
                    re.compile(m["message"])
                except re.error as exc:
                    raise DevCheckError(f"{where}: mistake {name!r}: message is not a regex ({exc})") from None
            cases.append(Case(kind, name, None, fails_on=m.get("criterion"), message=m.get("message"),
                              why=m.get("why", ""), builder=_builder(m["builder"], folder, where),
                              env=_env(m.get("env", {}), folder, where)))
    return cases


def _builder(spec: str, folder: Path, where: Path) -> Callable[[Path], Path]:
    """"module:function" -> the function, from MODULE.py in the folder that holds lab_cases/."""
    module, _, func = spec.partition(":")
    file = folder.parent.parent / f"{module}.py"
    if not func or not file.is_file():
        raise DevCheckError(f"{where}: builder {spec!r} is not module:function with "
                            f"{file} beside lab_cases/")
    mod = sys.modules.get(module)
    if mod is None or Path(getattr(mod, "__file__", "") or "").resolve() != file.resolve():
        loaded = importlib.util.spec_from_file_location(module, file)
        mod = importlib.util.module_from_spec(loaded)
        sys.modules[module] = mod  # the tests import it by this name too: one copy
        loaded.loader.exec_module(mod)
    fn = getattr(mod, func, None)
    if not callable(fn):
        raise DevCheckError(f"{where}: {file} has no function {func!r}")
    return fn


def _env(table: dict, folder: Path, where: Path) -> dict[str, str]:
    """A case's `env`: strings, with {tests} standing for the folder that holds lab_cases/."""
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise DevCheckError(f"{where}: env must be a table of strings")
    root = str(folder.parent.parent.resolve())
    return {k: v.replace("{tests}", root) for k, v in table.items()}


def materialise(case: Case, dest: Path) -> Path:
    """Copy the case's folder to DEST and apply its edits; `old` must occur exactly once. A
    fixture case instead builds its state in DEST (made empty) and returns what to check."""
    if case.builder is not None:
        dest.mkdir(parents=True)
        return Path(case.builder(dest))
    shutil.copytree(case.source, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for edit in case.edits:
        file = dest / edit["file"]
        text = file.read_text(encoding="utf-8") if file.is_file() else ""
        count = text.count(edit["old"])
        if count != 1:
            raise DevCheckError(f"mistake {case.name!r}: `old` occurs {count} times in "
                                f"{edit['file']} (it must occur exactly once)")
        file.write_text(text.replace(edit["old"], edit["new"]), encoding="utf-8")
    return dest


def judge(case: Case, criteria: list[dict]) -> tuple[str, str, str]:
    """(verdict, got, detail) of one case from its check's criteria."""
    failed = [c for c in criteria if not c["passed"]]
    first = failed[0] if failed else None
    if case.fails_on is None:
        if not failed:
            return "ok", f"passes ({len(criteria)}/{len(criteria)})", ""
        return "failed", f"fails on {first['name']}", _first_line(first)
    names = [c["name"] for c in criteria]
    if case.fails_on not in names:
        return "unknown criterion", f"no criterion {case.fails_on!r}", "the lab's criteria: " + ", ".join(names)
    target = next(c for c in criteria if c["name"] == case.fails_on)
    if not target["passed"] and target.get("status") != "not run":
        if case.message and not re.search(case.message, target["detail"] or "", re.I):
            return "wrong message", f"fails on {case.fails_on}", _first_line(target)
        return "ok", f"caught by {case.fails_on}", ""
    real = [c for c in failed if c.get("status") != "not run"] or failed
    if real:
        return "caught by another", f"caught by {real[0]['name']}", _first_line(real[0])
    return "missed", "passes every criterion", ""


def _first_line(crit: dict) -> str:
    lines = str(crit.get("detail") or "").strip().splitlines()
    return f"{crit['name']}: {lines[0] if lines else ''}"


def run_case(lab: Lab, case: Case, *, inputs: dict | None = None) -> Row:
    from zero2vllm.labs.check import run_check

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"z2v-devcheck-{lab.id}-") as tmp:
        target = materialise(case, Path(tmp) / lab.id)
        result = run_check(lab, target, inputs=inputs, stop_after=case.fails_on, env=case.env)
    verdict, got, detail = judge(case, result.criteria)
    return Row(case, verdict, got, detail, round(time.perf_counter() - t0, 1), result.criteria,
               result.metrics)


def dev_check(lab: Lab, folder: Path, *, jobs: int = 1, inputs: dict | None = None,
              on_row: Callable[[Row], None] | None = None) -> list[Row]:
    """Every case of LAB, in the order of load_cases (scaffold, reference, correct, mistakes)."""
    cases, requires = load_cases(lab, folder)
    skip = vllm_skip_reason(requires) if requires else None

    def one(case: Case) -> Row:
        row = case_row(lab, case, requires, skip, inputs=inputs)
        if on_row:
            on_row(row)
        return row

    if jobs <= 1:
        return [one(c) for c in cases]
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # each case is its own child process
        return list(pool.map(one, cases))


def case_row(lab: Lab, case: Case, requires: str | None, skip: str | None, *,
             inputs: dict | None = None) -> Row:
    """One case's row: checked, or skipped with SKIP (vllm_skip_reason(requires)) when it needs
    real vLLM that is not here. The tests check each case as its own test item through this."""
    # without a server the scaffold still runs (it fails before reaching one); a lab that
    # needs vLLM installed cannot judge even its scaffold without it
    if skip and (case.kind != "scaffold" or requires == "vllm"):
        return Row(case, "skipped", skip)
    return run_case(lab, case, inputs=inputs)


def vllm_skip_reason(requires: str = "vllm-server") -> str | None:
    """Why rows that need real vLLM cannot run here, or None when they can: REQUIRES "vllm" is
    real vLLM installed (`z2v vllm install`, or $ZERO2VLLM_VLLM_VENV), "vllm-server" one serving."""
    if os.environ.get("Z2V_TEST_VLLM") != "1":
        return VLLM_SKIP
    if requires == "vllm":
        from zero2vllm.realvllm.env import is_installed, venv_dir

        return None if is_installed() else (f"skipped: no real vLLM installed at {venv_dir()} "
                                            "(`z2v vllm install`, or set ZERO2VLLM_VLLM_VENV)")
    from zero2vllm.realvllm.serve import read_state

    state = read_state()
    return None if state and state.get("url") else VLLM_NOT_SERVING


def tally(rows: list[Row]) -> dict[str, Any]:
    mistakes = [r for r in rows if r.case.kind == "mistake" and r.verdict != "skipped"]
    return {"mistakes": len(mistakes),
            "caught": sum(r.verdict == "ok" for r in mistakes),
            "caught_by_another": sum(r.verdict == "caught by another" for r in mistakes),
            "missed": sum(r.verdict == "missed" for r in mistakes),
            "wrong_message": sum(r.verdict == "wrong message" for r in mistakes),
            "deviations": sum(r.deviation for r in rows),
            "skipped": sum(r.verdict == "skipped" for r in rows)}


def expected(case: Case) -> str:
    return "passes" if case.fails_on is None else f"fails on {case.fails_on}"


def table(rows: list[Row]) -> list[str]:
    """A plain-text table of ROWS."""
    body = [(r.case.label, expected(r.case), r.got, r.verdict) for r in rows]
    head = ("case", "expected", "got", "verdict")
    widths = [max(len(x[i]) for x in body + [head]) for i in range(4)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*head).rstrip()]
    for r, b in zip(rows, body):
        out.append(fmt.format(*b).rstrip())
        if r.deviation and r.detail:
            out.append(f"    {r.detail}")
    return out


def markdown(lab: Lab, rows: list[Row]) -> list[str]:
    """The table for docs/labs.md."""
    t = tally(rows)
    out = [f"#### `{lab.id}`", "",
           f"{t['caught']} of {t['mistakes']} mistakes caught by the right criterion, "
           f"{t['caught_by_another']} by another, {t['missed']} missed"
           + (f", {t['wrong_message']} with the wrong message" if t["wrong_message"] else "")
           + (f"; {t['skipped']} case(s) skipped (need real vLLM)" if t["skipped"] else "") + ".", "",
           "| case | expected | got | why |", "|---|---|---|---|"]
    for r in rows:
        why = r.case.why.replace("|", "\\|")
        mark = "" if not r.deviation else f" **({r.verdict})**"
        out.append(f"| {r.case.label} | {expected(r.case)} | {r.got}{mark} | {why} |")
    return out + [""]
