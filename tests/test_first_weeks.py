"""Issue 15: a learner's first weeks without surprises. Each test reproduces one defect found by
using the tool as a new learner would (timers, the calendar, errors, concurrent first use)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from zero2vllm.tracker.store import Store

from conftest import DATA, run_cli
from test_tracker import db_digest, store


def one_line_error(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), text
    assert "Traceback" not in text
    return lines[0]


@pytest.fixture
def clock(monkeypatch):
    """Set the clock (local time in UTC, so days are unambiguous)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()

    def at(when: str) -> None:
        monkeypatch.setenv("ZERO2VLLM_NOW", when + "+00:00")

    yield at
    monkeypatch.undo()
    time.tzset()


# -- durations -------------------------------------------------------------------------------------
@pytest.mark.parametrize("duration", ["0.4s", "9" * 5000 + "h", "1e999h", "0.0001m"])
def test_durations_that_cannot_be_stored_are_one_line_errors(z2v, home, duration):
    z2v("status")
    before = db_digest(home)
    out = z2v("log", "illustrated", duration, expect=2).output
    assert "duration" in one_line_error(out)
    assert db_digest(home) == before


# -- timers ----------------------------------------------------------------------------------------
def test_a_forgotten_timer_asks_or_caps_and_says_so(z2v, home, clock):
    clock("2026-11-23T09:00:00")
    z2v("plan", "start", "--on", "2026-11-23")
    clock("2026-11-24T22:00:00")
    z2v("start", "illustrated")
    clock("2026-11-26T09:00:00")  # 35 h later
    assert "over the 12h cap" in z2v("status").output
    before = db_digest(home)
    out = z2v("stop", expect=2).output  # no terminal to ask on: refused, with the ways out
    assert "over the 12h cap" in out and "--yes" in out and "--at" in out and "discard" in out
    assert db_digest(home) == before
    out = z2v("stop", input="n\n", expect=2).output  # asked, and said no
    assert "Log 12h (the cap)?" in out and db_digest(home) == before
    out = z2v("stop", input="y\n").output
    assert "capped at 12h" in out and "ran 1d" not in out
    entries = store(home).entries()
    # 22:00 to 10:00: two hours on the first day, ten on the next
    assert [(e.day, e.seconds) for e in entries] == [("2026-11-24", 7200), ("2026-11-25", 36000)]
    assert store(home).timer() is None


def test_stop_yes_caps_and_the_cap_is_configurable(z2v, home, clock, monkeypatch):
    clock("2026-11-23T08:00:00")
    z2v("plan", "start", "--on", "2026-11-23")
    z2v("start", "illustrated")
    monkeypatch.setenv("ZERO2VLLM_TIMER_CAP", "2h")
    clock("2026-11-23T13:00:00")
    assert "capped at 2h" in z2v("stop", "--yes").output
    assert [e.seconds for e in store(home).entries()] == [7200]


def test_stop_at_a_time_and_timer_discard(z2v, home, clock):
    clock("2026-11-23T20:00:00")
    z2v("plan", "start", "--on", "2026-11-23")
    z2v("start", "illustrated")
    clock("2026-11-24T08:00:00")
    assert "before the timer started" in one_line_error(z2v("stop", "--at", "2026-11-23 19:00", expect=2).output)
    assert "not a time" in one_line_error(z2v("stop", "--at", "soon", expect=2).output)
    out = z2v("stop", "--at", "21:30").output  # the last 21:30 before now: yesterday's
    assert "logged 1h 30m" in out
    (entry,) = store(home).entries()
    assert (entry.day, entry.seconds, entry.ended_at) == ("2026-11-23", 5400, "2026-11-23T21:30:00+00:00")
    z2v("start", "attention all you need")
    clock("2026-11-24T09:00:00")
    assert "nothing logged" in z2v("timer", "discard").output
    assert store(home).timer() is None and len(store(home).entries()) == 1
    z2v("undo")
    assert store(home).timer().item_id == "w1.attention-all-need"


def test_start_on_the_running_item_says_so_and_done_stops_its_timer(z2v, home, clock):
    clock("2026-11-23T09:00:00")
    z2v("plan", "start", "--on", "2026-11-23")
    z2v("start", "illustrated")
    clock("2026-11-23T09:20:00")
    out = z2v("start", "illustrated").output
    assert "already running" in out and "since 09:00" in out
    assert store(home).entries() == [] and store(home).timer().started_at.minute == 0
    clock("2026-11-23T09:45:00")
    out = z2v("done", "illustrated").output
    assert "done" in out and "logged 45m" in out
    assert [e.seconds for e in store(home).entries()] == [2700] and store(home).timer() is None
    assert "Undid: done w1.illustrated-transformer; stop its timer" in z2v("undo").output  # one change
    assert store(home).timer() is not None and store(home).entries() == []
    assert store(home).state("w1.illustrated-transformer").status == "in_progress"
    z2v("start", "attention all you need")  # a skip stops its timer too
    clock("2026-11-23T10:00:00")
    assert "logged 15m" in z2v("skip", "attention all you need").output


def test_a_timer_switch_is_one_transaction(home):
    """Two `start`s at once: every timer replaced is stopped and journalled (none lost)."""
    run_cli("plan", "start", "--on", "2026-11-23", env={"ZERO2VLLM_NOW": "2026-11-25T09:00:00"})
    env = {**os.environ, "ZERO2VLLM_NOW": "2026-11-25T09:00:00"}
    items = ["illustrated", "attention all you need", "karpathy intro", "1-page summary"]
    for rnd in range(4):
        procs = [subprocess.Popen([sys.executable, "-m", "zero2vllm", "start", items[(rnd + k) % 4]],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for k in range(2)]
        for p in procs:
            assert p.wait(timeout=60) == 0, p.stderr.read()
    s = store(home)
    starts = s.conn.execute("SELECT COUNT(*) FROM journal WHERE action = 'start'").fetchone()[0]
    stops = s.conn.execute("SELECT COUNT(*) FROM journal WHERE action = 'stop'").fetchone()[0]
    assert starts - stops == 1  # only the running one was never stopped


# -- one calendar ----------------------------------------------------------------------------------
@pytest.mark.parametrize("start", ["2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26", "2026-11-27",
                                   "2026-11-28", "2026-11-29"])
def test_a_start_on_any_weekday_gives_one_calendar(z2v, home, clock, start, tmp_path):
    """Weeks run Monday to Sunday (the blocks name weekdays): a start on another day snaps to
    its Monday and says so; status, the week, the report and the dashboard then agree."""
    clock("2026-11-28T10:00:00")  # a Saturday
    out = z2v("plan", "start", "--on", start).output
    assert "Week 1 starts on 2026-11-23" in out
    assert ("is a " in out) == (start != "2026-11-23")
    assert store(home).get_plan()["start_date"] == "2026-11-23"
    z2v("log", "illustrated", "2h")
    st = z2v.json("status")
    assert st["today_block"]["label"] == "Weekend" and st["today_block"]["hours_logged"] == 2.0
    by_label = {b["label"]: b["hours_logged"] for b in st["this_week"]["blocks"]}
    assert by_label["Weekend"] == 2.0 and sum(by_label.values()) == 2.0
    report = json.loads(z2v("report", "--format", "json", "-o", "-").output)
    sat = [d for d in report["hours"]["by_day"] if d["day"] == "2026-11-28"]
    assert sat[0]["logged"] == 2.0 and report["week"]["start"] == "2026-11-23"
    from zero2vllm.web.app import create_app

    client = create_app(home / "zero2vllm.db").test_client()
    html = client.get("/week/1").get_data(as_text=True)
    weekend = html.split("Weekend", 1)[1][:600]
    assert "2.0h" in weekend


def test_days_in_the_future_or_before_the_plan_are_refused_unless_forced(z2v, home, clock):
    clock("2026-11-25T10:00:00")
    z2v("plan", "start", "--on", "2026-11-23")
    before = db_digest(home)
    assert "in the future" in one_line_error(z2v("log", "illustrated", "1h", "--on", "2026-11-26", expect=2).output)
    out = one_line_error(z2v("log", "illustrated", "1h", "--on", "2026-11-22", expect=2).output)
    assert "before the plan starts (2026-11-23)" in out and "--force" in out
    assert db_digest(home) == before
    z2v("log", "illustrated", "1h", "--on", "2026-11-22", "--force")
    assert [e.day for e in store(home).entries()] == ["2026-11-22"]


def test_a_fresh_store_shows_no_time(z2v, home, tmp_path, seed_text):
    st = z2v.json("status")
    assert st["hours"]["logged"] == 0 and st["today_block"]["hours_logged"] == 0
    assert store(home).entries() == [] and store(home).states() == {}
    # the learner's own text: its annotation ("watched for 30 min") is their progress
    path = tmp_path / "mine.txt"
    path.write_text(seed_text)
    assert "logged 30m" in z2v("plan", "import", str(path)).output
    assert z2v.json("status")["hours"]["logged"] == 0.5


def test_four_first_commands_at_once_import_the_plan_once(tmp_path):
    for trial in range(3):
        home = tmp_path / f"h{trial}"
        env = {**os.environ, "ZERO2VLLM_HOME": str(home)}
        procs = [subprocess.Popen([sys.executable, "-m", "zero2vllm", cmd], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for cmd in ("status", "next", "week", "status")]
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0 and "locked" not in err, err
        s = Store.open(home / "zero2vllm.db")
        assert s.conn.execute("SELECT COUNT(*) FROM plan").fetchone()[0] == 1
        assert s.conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 0  # no import x4
        assert s.entries() == []


# -- store and file-system errors: one line, exit 2, nothing changed ------------------------------
def test_store_errors_are_one_line_naming_the_file(home, tmp_path):
    run_cli("status")
    db = home / "zero2vllm.db"
    before = db_digest(home)
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not SQLite" * 100)
    cases = [
        (["--db", str(tmp_path), "status"], {}, [str(tmp_path), "directory"]),
        (["status"], {"ZERO2VLLM_HOME": "/proc/nope"}, ["/proc/nope", "ZERO2VLLM_HOME"]),
        (["--db", str(corrupt), "status"], {}, [str(corrupt), "backup"]),
    ]
    for args, env, words in cases:
        proc = run_cli(*args, env=env, check=False)
        line = one_line_error(proc.stderr)
        assert proc.returncode == 2 and all(w in line for w in words), (args, line)
    assert corrupt.read_bytes() == b"this is not SQLite" * 100
    # a lock held past the busy timeout (another process in the middle of a write)
    import sqlite3

    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        proc = run_cli("log", "illustrated", "30m", env={"ZERO2VLLM_BUSY_TIMEOUT": "0.3"}, check=False)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    line = one_line_error(proc.stderr)
    assert proc.returncode == 2 and str(db) in line and "locked" in line and "try again" in line
    assert db_digest(home) == before


def test_a_read_only_database_is_one_line(home, tmp_path):
    """Read-only by `chattr +i` (file modes do not stop root, who runs CI here)."""
    db = tmp_path / "ro.db"
    run_cli("--db", str(db), "status")
    if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        before = db.read_bytes()
        proc = run_cli("--db", str(db), "log", "illustrated", "30m", check=False)
        line = one_line_error(proc.stderr)
        assert proc.returncode == 2 and str(db) in line and "read-only" in line, line
        assert db.read_bytes() == before
        assert run_cli("--db", str(db), "status", check=False).returncode == 0  # reading still works
    finally:
        subprocess.run(["chattr", "-i", str(db)])


@pytest.mark.parametrize("args", [["log", "illustrated", "30m", "--note", b"caf\xe9"],
                                  ["note", "illustrated", "--text", b"\xff\xfe"],
                                  ["card", "add", b"what is \xff?", "x"]])
def test_non_utf8_arguments_are_one_line(home, args):
    run_cli("status")
    before = db_digest(home)
    proc = subprocess.run([sys.executable, "-m", "zero2vllm", *args], capture_output=True,
                          env={**os.environ, "LC_ALL": "C.UTF-8"}, timeout=60)
    line = one_line_error(proc.stderr.decode("utf-8", "replace"))
    assert proc.returncode == 2 and "not UTF-8" in line
    assert db_digest(home) == before


# -- plan files: line endings, sizes, devices ------------------------------------------------------
MIXED = (b"8-Week Plan: Mixed\r\n\r\nWEEK 1: One\r\nMonday (2 hours):\rWatch: A talk (1 hour)\r"
         b"Read: A paper\r\nWEEK 2: Two\nTuesday (2 hours):\r\nWatch: Another talk\rRead: Another paper\r\n"
         b"Output: A summary\r")


def test_mixed_line_endings_import_right_and_round_trip_the_bytes(z2v, tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_bytes(MIXED)
    out = z2v("plan", "import", str(path)).output
    assert "2 weeks (0 draft), 5 items" in out
    plan = z2v.json("plan", "show")
    assert [len(w["items"]) for w in plan["weeks"]] == [2, 3]
    assert [[b["label"] for b in w["blocks"]] for w in plan["weeks"]] == [["Monday"], ["Tuesday"]]
    dest = tmp_path / "out.txt"
    z2v("plan", "export", "-o", str(dest))
    assert dest.read_bytes() == MIXED  # the author's bytes, every line ending as it was


def test_plan_files_are_capped_alike_and_devices_refused(z2v, home, tmp_path):
    from zero2vllm.tracker import plan as planlib
    from zero2vllm.web import app as webapp

    z2v("status")
    before = db_digest(home)
    assert webapp.MAX_PLAN_BYTES == planlib.MAX_PLAN_BYTES  # one cap, CLI and dashboard
    big = tmp_path / "big.txt"
    big.write_bytes((DATA / "seed_plan.txt").read_bytes() + b"\n" + b"Read: more\n" * 300_000)
    assert "KiB" in one_line_error(z2v("plan", "import", str(big), expect=2).output)
    started = time.monotonic()
    assert "not a regular file" in one_line_error(z2v("plan", "import", "/dev/zero", expect=2).output)
    assert time.monotonic() - started < 5
    assert "not a regular file" in one_line_error(z2v("import", "--all", "/dev/zero", expect=2).output)
    assert db_digest(home) == before


@pytest.mark.parametrize("version", [2, 0, "1", None, [1]])
def test_import_all_of_another_version_is_one_line(z2v, tmp_path, version):
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"format": "zero2vllm-export", "version": version, "schema_version": 1,
                                "tables": {}}))
    out = z2v("--db", str(tmp_path / "new.db"), "import", "--all", str(path), expect=2).output
    assert "export version" in one_line_error(out)


def test_note_without_an_editor_reads_stdin(z2v, home, monkeypatch):
    monkeypatch.delenv("EDITOR", raising=False)
    monkeypatch.delenv("VISUAL", raising=False)
    out = z2v("note", "illustrated", input="# My summary\n\nAttention is a soft lookup.\n").output
    assert "Saved note" in out
    assert store(home).note("w1.illustrated-transformer").startswith("# My summary")
