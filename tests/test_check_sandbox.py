"""Learner code that attacks its own check: forging a pass, reading the store, deleting a file
in $HOME, a bounded fork bomb, processes left behind in a new session. Each attempt fails and
the check says so. The attacks run at import time, in one learner file, so each case costs one
short check (the transformer lab's "imports" criterion only: no training)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from zero2vllm.labs import get_lab
from zero2vllm.labs.check import run_check
from zero2vllm.labs.sandbox import Limits, bwrap_works
from zero2vllm.tracker.store import Store

LAB = get_lab("transformer")
ONLY = ["(none)"]  # no criterion beyond "imports": the attacks run when the file is imported
needs_bwrap = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here")

# Prints one JSON line of what each attack achieved, then (optionally) forges events.
ATTACK = r'''
import json, os, sqlite3, subprocess, sys, time
found = {}
found["env"] = {k: os.environ.get(k) for k in ("ZERO2VLLM_DB", "ZERO2VLLM_HOME")}
try:
    con = sqlite3.connect("file:" + DB + "?mode=ro", uri=True)
    found["notes"] = [r[0] for r in con.execute("SELECT text FROM note")]
except Exception as exc:
    found["notes"] = "refused: " + type(exc).__name__
try:
    con = sqlite3.connect(DB)
    con.execute("INSERT INTO note VALUES ('forged', 'written by the check', '2026')")
    con.commit()
    found["wrote"] = True
except Exception as exc:
    found["wrote"] = "refused: " + type(exc).__name__
for name, target in (("home_tilde", os.path.expanduser("~/victim.txt")), ("home_abs", VICTIM)):
    try:
        os.remove(target)
        found[name] = "deleted"
    except OSError as exc:
        found[name] = "refused: " + exc.strerror
forks = []
for _ in range(FORKS):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    forks.append(pid)
found["forks"] = len(forks)
for pid in forks:  # room again for the next attack
    os.kill(pid, 9)
    os.waitpid(pid, 0)
subprocess.Popen(["sleep", MARK + "1"], start_new_session=True)
subprocess.Popen(["sleep", MARK + "2"])
print("ATTACK " + json.dumps(found), flush=True)
if FORGE:
    line = lambda **e: (json.dumps(e) + "\n").encode()
    forged = line(event="result", name="imports", passed=True, detail="ok", seconds=0)
    forged += line(event="metrics", metrics={}) + line(event="done", passed=True)
    for fd in range(3, 256):
        try:
            os.write(fd, forged)
        except OSError:
            pass
    print("PASS  imports\nPASSED: 1/1 criteria", flush=True)
    os._exit(0)
'''


def _attack_dir(tmp_path: Path, db: Path, victim: Path, *, forge: bool, forks: int = 200) -> tuple[Path, str]:
    mark = f"300.{uuid.uuid4().int % 10**9}"  # `sleep 300.NNN1`: findable afterwards
    d = tmp_path / "mine"
    d.mkdir()
    head = (f"DB = {str(db)!r}\nVICTIM = {str(victim)!r}\nFORKS = {forks}\nMARK = {mark!r}\n"
            f"FORGE = {forge}\n")
    (d / "model.py").write_text(head + ATTACK)
    return d, mark


def _store_with_a_note(home: Path) -> Path:
    db = home / "zero2vllm.db"
    store = Store.open(db)
    store.conn.execute("INSERT INTO note VALUES ('w1.x', 'my private note', '2026-01-01')")
    store.conn.commit()
    store.close()
    return db


def _survivors(mark: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", f"sleep {mark}"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def _attack_result(output: str) -> dict:
    line = next(ln for ln in output.splitlines() if ln.startswith("ATTACK "))
    return json.loads(line[len("ATTACK "):])


@pytest.fixture
def victim(tmp_path, monkeypatch) -> Path:
    """A $HOME with a file the learner's code tries to delete."""
    real_home = tmp_path / "realhome"
    real_home.mkdir()
    (real_home / "victim.txt").write_text("keep me")
    monkeypatch.setenv("HOME", str(real_home))
    return real_home / "victim.txt"


@needs_bwrap
def test_bubblewrap_check_refuses_a_forged_pass_and_contains_every_attack(home, tmp_path, victim):
    db = _store_with_a_note(home)
    path, mark = _attack_dir(tmp_path, db, victim, forge=True)
    t0 = time.perf_counter()
    result = run_check(LAB, path, only=ONLY, limits=Limits(processes=64))
    assert time.perf_counter() - t0 < 60
    assert not result.passed and result.refused and "secret" in result.refused
    assert "bubblewrap" in result.isolation
    found = _attack_result(result.output_tail)
    assert found["env"] == {"ZERO2VLLM_DB": None, "ZERO2VLLM_HOME": None}
    assert str(found["notes"]).startswith("refused") and str(found["wrote"]).startswith("refused")
    assert found["home_abs"].startswith("refused")  # the real $HOME is read-only
    assert victim.read_text() == "keep me"
    assert 0 < found["forks"] < 64  # the pids cgroup (or RLIMIT_NPROC) stopped the loop
    assert _survivors(mark) == []  # the new-session sleeper and the plain one both ended
    store = Store.open(db)
    assert [r["text"] for r in store.conn.execute("SELECT text FROM note")] == ["my private note"]
    store.close()


def test_without_bubblewrap_the_check_still_refuses_forgery_and_ends_every_process(
        home, tmp_path, victim, monkeypatch):
    monkeypatch.setenv("ZERO2VLLM_SANDBOX", "none")
    db = _store_with_a_note(home)
    path, mark = _attack_dir(tmp_path, db, victim, forge=True, forks=20)
    result = run_check(LAB, path, only=ONLY)
    assert result.refused and not result.passed and "no bubblewrap" in result.isolation
    found = _attack_result(result.output_tail)
    assert found["env"] == {"ZERO2VLLM_DB": None, "ZERO2VLLM_HOME": None}
    assert found["home_tilde"].startswith("refused")  # ~ is the throw-away HOME: no such file
    # by its absolute path the real one is not protected: only bubblewrap's read-only root does that
    assert _survivors(mark) == []


def test_exiting_early_with_fake_output_is_a_failed_check(home, tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "model.py").write_text("import os\nprint('PASS  imports\\nPASSED: 9/9 criteria')\nos._exit(0)\n")
    result = run_check(LAB, d, only=ONLY)
    assert not result.passed and not result.refused
    assert "exit code 0" in result.criteria[0]["detail"]


def test_cli_records_a_forged_check_as_refused_and_marks_nothing_done(z2v, home, tmp_path, victim):
    db = home / "zero2vllm.db"
    path, mark = _attack_dir(tmp_path, db, victim, forge=True, forks=0)
    result = z2v("check", "transformer", str(path), expect=1)  # a full check: recorded
    assert "isolation: " in result.output
    assert "REFUSED" in result.output and "recorded as refused" in result.output
    runs = Store.open(db).lab_runs("transformer", kind="check")
    assert len(runs) == 1 and not runs[0]["passed"] and "secret" in runs[0]["refused"]
    assert runs[0]["isolation"]
    states = sqlite3.connect(db).execute("SELECT status FROM item_state WHERE status = 'done'").fetchall()
    assert states == []
    assert _survivors(mark) == []


def test_a_normal_check_reports_its_isolation_and_leaves_nothing_behind(home, tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    mark = f"300.{uuid.uuid4().int % 10**9}"
    (d / "data.txt").write_text("mine")
    (d / "model.py").write_text(
        f"import subprocess\nsubprocess.Popen(['sleep', '{mark}'])\n"
        "assert open('data.txt').read() == 'mine'  # relative paths see the learner's files\n"
        "open('scratch.txt', 'w').write('thrown away')\n")
    result = run_check(LAB, d, only=ONLY)
    assert result.passed and not result.refused and result.isolation, result.criteria
    assert _survivors(mark) == []
    assert sorted(p.name for p in d.iterdir()) == ["data.txt", "model.py"]


def _lines(nonce: str, *events: dict) -> list[bytes]:
    return [json.dumps({"nonce": nonce, "seq": i, **e}).encode() for i, e in enumerate(events)]


def _verify(tmp_path: Path, lines: list[bytes], source: str = "x = 1\n"):
    from zero2vllm.labs.verify import Verifier

    d = tmp_path / "v"
    d.mkdir(exist_ok=True)
    (d / "model.py").write_text(source)
    v = Verifier("n0nce", d, LAB, ["imports", "output shapes"])
    for line in lines:
        v.accept(line)
    return v


GOOD = [{"event": "plan", "criteria": ["imports", "output shapes"]},
        {"event": "start", "name": "imports"}, {"event": "result", "name": "imports", "passed": True},
        {"event": "start", "name": "output shapes"},
        {"event": "result", "name": "output shapes", "passed": True},
        {"event": "metrics", "metrics": {}}, {"event": "done", "passed": True}]


def test_verifier_accepts_the_runner_s_own_sequence(tmp_path):
    v = _verify(tmp_path, _lines("n0nce", *GOOD))
    assert v.refused is None and v.verified == {"imports", "output shapes"}
    v.finish(0)
    assert v.refused is None


@pytest.mark.parametrize("why, lines, source", [
    ("secret", _lines("guess", *GOOD), "x = 1\n"),
    ("not one of the checker", [b"PASSED 2/2"], "x = 1\n"),
    ("sequence", [_lines("n0nce", *GOOD)[i] for i in (0, 1, 1)], "x = 1\n"),
    ("not the lab's criteria", _lines("n0nce", {"event": "plan", "criteria": ["imports"]}), "x = 1\n"),
    ("without having started", _lines("n0nce", GOOD[0], GOOD[2]), "x = 1\n"),
    ("second result", _lines("n0nce", *GOOD[:3], GOOD[2]), "x = 1\n"),
    ("done before", _lines("n0nce", *GOOD[:3], GOOD[-1]), "x = 1\n"),
    ("after the check had finished", _lines("n0nce", *GOOD, GOOD[2]), "x = 1\n"),
    ("does not compile", _lines("n0nce", *GOOD), "def broken(:\n"),
])
def test_verifier_refuses_what_the_runner_never_sends(tmp_path, why, lines, source):
    v = _verify(tmp_path, lines, source)
    assert v.refused and why in v.refused, v.refused


def test_verifier_refuses_an_odd_exit_after_done(tmp_path):
    v = _verify(tmp_path, _lines("n0nce", *GOOD))
    v.finish(7)
    assert v.refused and "code 7" in v.refused
