"""Shared fixtures: every test gets its own data directory, so nothing touches the user's store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "seed" / "000_e5b8c9ff3910d425.txt"
DATA = Path(__file__).parent / "data"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh ZERO2VLLM_HOME for this test (and the subprocesses it starts)."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("ZERO2VLLM_HOME", str(path))
    monkeypatch.delenv("ZERO2VLLM_DB", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    return path


@pytest.fixture
def z2v(home):
    """Run the CLI in-process: z2v("log", "w1.x", "30m") -> click Result."""
    from zero2vllm.cli import main

    runner = CliRunner()

    def run(*args: str, input: str | None = None, expect: int | None = 0):
        result = runner.invoke(main, list(args), input=input, catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, f"z2v {' '.join(args)} -> {result.exit_code}\n{result.output}"
        return result

    run.json = lambda *args: json.loads(run(*args, "--json").output)
    return run


def run_cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run `python -m zero2vllm ...` in a real process (for timing, imports, concurrency)."""
    proc = subprocess.run([sys.executable, "-m", "zero2vllm", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def seed_text() -> str:
    if SEED.exists():
        return SEED.read_text()
    return (DATA / "seed_plan.txt").read_text()
