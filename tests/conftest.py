"""Shared fixtures: every test gets its own data directory, so nothing touches the user's store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

# A process started in the background by a non-interactive shell (or as a pytest-xdist worker)
# inherits SIGINT ignored, and so would every server a test starts and then stops with SIGINT.
if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "seed" / "000_e5b8c9ff3910d425.txt"
DATA = Path(__file__).parent / "data"
# One converted SmolLM2 (and the tiny models made from it) for every test and every check
# process a test starts, as tests/model_cache.py keeps it: each test has a fresh ZERO2VLLM_HOME,
# and a lab check in one would otherwise convert the model again there (~25 s).
os.environ.setdefault("ZERO2VLLM_MODEL_CACHE", str(ROOT / ".devcache" / "models"))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Tests marked slow first, each group in pytest-randomly's order (a stable sort on top of its
    shuffle): on two xdist workers a long test that starts last runs alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


# -- PostgreSQL for the group server's tests ---------------------------------------------------
def _pg_installed() -> bool:
    import glob
    import shutil

    return bool(shutil.which("pg_config") or glob.glob("/usr/lib/postgresql/*/bin/initdb"))


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL for this test session: $Z2V_TEST_PG_URL if set, else one started by
    scripts/pg.sh in a temporary directory. CI sets Z2V_TEST_PG=1, so a missing server fails
    there instead of skipping."""
    import shutil
    import tempfile

    if os.environ.get("Z2V_TEST_PG_URL"):
        yield os.environ["Z2V_TEST_PG_URL"]
        return
    if not _pg_installed() and not (os.getuid() == 0 and shutil.which("apt-get")):
        if os.environ.get("Z2V_TEST_PG") == "1":
            pytest.fail("Z2V_TEST_PG=1 but PostgreSQL is not installed")
        pytest.skip("PostgreSQL is not installed (bash scripts/pg.sh start DIR installs it as root)")
    # Not under pytest's tmp_path: that is private to root, and the server runs as another user.
    where = tempfile.mkdtemp(prefix="z2v-pg-", dir="/tmp")
    os.chmod(where, 0o755)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "pg.sh"), "start", where],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"could not start PostgreSQL: {proc.stderr.strip()}")
    try:
        yield proc.stdout.strip()
    finally:
        subprocess.run(["bash", str(ROOT / "scripts" / "pg.sh"), "stop", where], capture_output=True, timeout=120)
        shutil.rmtree(where, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty database on the session's server, dropped after the test."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg_server.rsplit("/", 1)[0] + "/" + name
    yield url
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
