"""Running things in the learner's clone: pytest with a JUnit report (per-test outcomes, not a
parsed terminal), pre-commit, and the DCO sign-off rule."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

OUTCOMES = ("passed", "failed", "error", "skipped")


def clone_python(repo: Path, chosen: str | None = None) -> str:
    """The interpreter that runs the clone's tests: CHOSEN (the stored `--python`), else a venv
    inside the clone (.venv, venv), else zero2vllm's own."""
    if chosen:
        return chosen
    for name in (".venv", "venv"):
        cand = repo / name / "bin" / "python"
        if cand.exists():
            return str(cand)
    return sys.executable


@dataclass
class TestRun:
    outcomes: dict[str, str] = field(default_factory=dict)  # "tests/test_x.py::test_y" -> outcome
    returncode: int = 0
    output: str = ""
    timed_out: bool = False

    def counts(self) -> dict[str, int]:
        return {o: sum(1 for v in self.outcomes.values() if v == o) for o in OUTCOMES}


def _test_id(case: ET.Element) -> str:
    # JUnit names a test by dotted classname: "tests.test_x" or "tests.test_x.TestA"
    cls, name = case.get("classname", ""), case.get("name", "")
    file = case.get("file")
    parts = cls.split(".")
    klass = parts.pop() if parts and parts[-1][:1].isupper() else None
    path = file or "/".join(parts) + ".py"
    return f"{path}::{klass}::{name}" if klass else f"{path}::{name}"


def parse_junit(xml_path: Path) -> dict[str, str]:
    out = {}
    root = ET.parse(xml_path).getroot()
    for case in root.iter("testcase"):
        tags = {child.tag for child in case}
        outcome = ("failed" if "failure" in tags else "error" if "error" in tags
                   else "skipped" if "skipped" in tags else "passed")
        out[_test_id(case)] = outcome
    return out


def pytest(repo_dir: Path, targets: list[str], *, python: str, timeout: float = 600,
           junit: Path | None = None, extra: tuple[str, ...] = ()) -> TestRun:
    """Run pytest on TARGETS inside REPO_DIR (its code first on sys.path); per-test outcomes
    come from the JUnit report."""
    with tempfile.TemporaryDirectory(prefix="z2v-junit-") as tmp:
        report = junit or Path(tmp) / "junit.xml"
        cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
               "-o", "junit_family=xunit1", *extra, *targets]
        env = {**os.environ, "PYTHONPATH": str(repo_dir), "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            proc = subprocess.run(cmd, cwd=repo_dir, capture_output=True, text=True, timeout=timeout,
                                  env=env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            return TestRun(returncode=-1, output=str(exc.stdout or "")[-3000:], timed_out=True)
        outcomes = parse_junit(report) if report.exists() and report.stat().st_size else {}
        return TestRun(outcomes, proc.returncode, (proc.stdout + proc.stderr)[-3000:])


def pick(outcomes: dict[str, str], test_file: str, name: str) -> str | None:
    """The outcome of NAME ("test_x" or "TestA::test_x") in TEST_FILE; parametrised cases
    count as failed if any fails."""
    key = f"{test_file}::{name}"
    hits = [v for k, v in outcomes.items() if k == key or k.startswith(key + "[")]
    if not hits:
        return None
    for bad in ("error", "failed"):
        if bad in hits:
            return "failed"
    return "skipped" if all(h == "skipped" for h in hits) else "passed"


# -- pre-commit -----------------------------------------------------------------------------------
def pre_commit_cmd(repo: Path) -> list[str] | None:
    """How to run pre-commit: the clone's venv, PATH, or the module in zero2vllm's Python."""
    for cand in (repo / ".venv" / "bin" / "pre-commit", repo / "venv" / "bin" / "pre-commit"):
        if cand.exists():
            return [str(cand)]
    found = shutil.which("pre-commit")
    if found:
        return [found]
    try:
        import pre_commit  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-m", "pre_commit"]


def run_pre_commit(workdir: Path, base: str, head: str, timeout: float = 900) -> tuple[int, str]:
    cmd = pre_commit_cmd(workdir)
    if cmd is None:
        return 127, "pre-commit is not installed: pip install pre-commit"
    proc = subprocess.run([*cmd, "run", "--from-ref", base, "--to-ref", head, "--show-diff-on-failure"],
                          cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, "SKIP": os.environ.get("SKIP", "")})
    return proc.returncode, (proc.stdout + proc.stderr)[-3000:]


def unsigned(commits: list[dict]) -> list[str]:
    """Why each commit fails DCO (one line each): no Signed-off-by, or none by its author's
    email (the DCO app matches the author's email)."""
    problems = []
    for c in commits:
        short = f"{c['sha'][:8]} {c['subject'][:50]!r}"
        if not c["signoffs"]:
            problems.append(f"{short}: no Signed-off-by line")
        elif c["email"].lower() not in {e.lower() for _, e in c["signoffs"]}:
            signed = ", ".join(e for _, e in c["signoffs"])
            problems.append(f"{short}: signed off by {signed}, but the author is {c['email']}")
    return problems


SUMMARY = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|warnings?)\b")


def summary_counts(text: str) -> dict[str, int]:
    """pytest's summary counts in TEXT ("3 passed, 1 failed"), summed over every summary line."""
    counts: dict[str, int] = {}
    for n, word in SUMMARY.findall(text):
        word = {"errors": "error", "warnings": "warning"}.get(word, word)
        if word != "warning":
            counts[word] = counts.get(word, 0) + int(n)
    return counts
