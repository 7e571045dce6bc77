"""The tracking CLI against a temporary store: what it prints and, above all, what it stores."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from zero2vllm.tracker import progress
from zero2vllm.tracker.store import SCHEMA_VERSION, Store

from conftest import DATA, SEED, run_cli


def store(home) -> Store:
    return Store.open(home / "zero2vllm.db")


def db_digest(home) -> str:
    """The store's content, table by table (the WAL may hold what the main file doesn't)."""
    s = store(home)
    rows = []
    for (name,) in s.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
        rows.append((name, s.conn.execute(f"SELECT * FROM {name} ORDER BY 1").fetchall()))
    s.close()
    return hashlib.sha256(repr([(n, [tuple(r) for r in rs]) for n, rs in rows]).encode()).hexdigest()


def import_seed(z2v, tmp_path, seed_text):
    path = tmp_path / "seed.txt"
    path.write_text(seed_text)
    return z2v("plan", "import", str(path))


def test_seed_import_logs_the_annotation(z2v, home, tmp_path, seed_text):
    out = import_seed(z2v, tmp_path, seed_text).output
    assert "3 weeks" in out and "logged 30m on w1.intro-large-language-models" in out
    s = store(home)
    entries = s.entries()
    assert [(e.item_id, e.seconds, e.source) for e in entries] == [
        ("w1.intro-large-language-models", 1800, "import")]
    assert s.state("w1.intro-large-language-models").status == "in_progress"
    # importing the same text again adds nothing: annotations state totals
    import_seed(z2v, tmp_path, seed_text)
    assert store(home).seconds_by_item() == {"w1.intro-large-language-models": 1800}


def test_first_use_gets_the_bundled_plan_with_drafts(z2v):
    st = z2v.json("status")
    assert st["plan"]["weeks"] == 8
    assert [w["draft"] for w in st["weeks"]] == [False] * 3 + [True] * 5
    plan = z2v.json("plan", "show")
    assert plan["weeks"][3]["draft"] is True


def test_round_trip_through_the_store(z2v, tmp_path, seed_text):
    import_seed(z2v, tmp_path, seed_text)
    assert z2v("plan", "export").output == seed_text  # no new progress: the text as written
    z2v("log", "karpathy intro", "15m")
    z2v("done", "illustrated")
    z2v("log", "attention mechanism", "1h20m")
    out = z2v("plan", "export").output
    assert "XfpMkf4rD6E - watched for 45 min" in out
    assert "illustrated-transformer/ - done" in out
    assert "Focus on: attention mechanism, self-attention, multi-head attention - 1h 20m so far" in out
    changed = [(a, b) for a, b in zip(seed_text.splitlines(), out.splitlines()) if a != b]
    assert len(changed) == 3 and len(out.splitlines()) == len(seed_text.splitlines())
    # the exported text imports back to the same progress, adding nothing
    path = tmp_path / "exported.txt"
    path.write_text(out)
    before = z2v.json("status")["hours"]
    z2v("plan", "import", str(path))
    assert z2v.json("status")["hours"] == before
    assert z2v("plan", "export").output == out


@pytest.mark.parametrize("name", ["plan_rust.txt", "plan_go_crlf.txt"])
def test_unseen_plans_import_and_round_trip(z2v, name):
    path = DATA / name
    z2v("plan", "import", str(path))
    assert z2v("plan", "export").output.encode() == path.read_bytes().replace(b"\r\n", b"\n") or \
        z2v("plan", "export").output == path.read_bytes().decode()
    st = z2v.json("status")
    assert st["plan"]["weeks"] == 2


def test_reimport_keeps_progress_and_reports_orphans(z2v, home, tmp_path, seed_text):
    import_seed(z2v, tmp_path, seed_text)
    z2v("done", "w1.q-k-v-matrices")
    z2v("log", "w2.kv-cache-transformers", "20m")
    edited = seed_text.replace('Google: "KV cache in transformers" - read top 3 results\n', "")
    edited = edited.replace("Use PyTorch\n", "Use PyTorch 2\n")
    path = tmp_path / "edited.txt"
    path.write_text(edited)
    out = z2v("plan", "import", str(path)).output
    assert "no longer in the plan: w2.kv-cache-transformers" in out
    s = store(home)
    assert s.state("w1.q-k-v-matrices").status == "done"
    assert s.seconds_by_item()["w2.kv-cache-transformers"] == 1200  # kept, never deleted


def test_log_done_skip_reopen_undo(z2v, home, monkeypatch):
    monkeypatch.setenv("ZERO2VLLM_NOW", "2026-11-26T10:00:00")
    z2v("plan", "start", "--on", "2026-11-23")
    z2v("log", "w1.illustrated-transformer", "1h15m", "--on", "2026-11-24", "--note", "part 1")
    z2v("done", "w1.illustrated-transformer")
    z2v("skip", "w1.attention-all-need")
    s = store(home)
    assert s.state("w1.attention-all-need").status == "skipped"
    # the bundled plan's "watched for 30 min" is its author's, not this learner's: no entry
    assert [(e.day, e.seconds, e.note, e.source) for e in s.entries()] == [
        ("2026-11-24", 4500, "part 1", "log")]
    z2v("reopen", "w1.attention-all-need")
    assert store(home).state("w1.attention-all-need").status == "todo"
    assert "Undid: reopen" in z2v("undo").output
    assert store(home).state("w1.attention-all-need").status == "skipped"
    z2v("undo")
    z2v("undo")  # done
    assert store(home).state("w1.illustrated-transformer").status == "in_progress"
    z2v("undo")  # the log
    assert store(home).entries() == []
    assert store(home).state("w1.illustrated-transformer") is None
    assert "Undid: plan start" in z2v("undo").output
    # the bundled plan came with the first command, not from the learner: nothing to undo there
    assert "nothing to undo" in z2v("undo", expect=2).output
    assert store(home).get_plan() is not None


def test_notes(z2v, home):
    z2v("note", "w1.write-1-page", "--text", "Attention is <b>soft</b> lookup.")
    assert store(home).note("w1.write-1-page-summary-own") == "Attention is <b>soft</b> lookup."
    assert "soft" in z2v("note", "w1.write-1-page", "--show").output


@pytest.mark.parametrize("ref, expected", [
    ("w1.illustrated-transformer", "w1.illustrated-transformer"),
    ("w1.illus", "w1.illustrated-transformer"),
    ("illustrated-transformer", "w1.illustrated-transformer"),
    ("karpathy intro", "w1.intro-large-language-models"),
    ("Karpathy GPT scratch", "w1.lets-build-gpt-scratch"),
    ("flask", "w2.build-naive-llm-serving"),
])
def test_item_references(ref, expected):
    plan = progress.planlib.parse(tracker_default_text())
    assert plan.find(ref).id == expected


def tracker_default_text() -> str:
    from zero2vllm.paths import default_plan_path

    return default_plan_path().read_text()


@pytest.mark.parametrize("ref, words", [
    ("karpathy", "matches 2 items"),
    ("w1.", "matches 9 items"),
    ("illustrated transfomer typo", "no item matches"),
])
def test_bad_references_name_candidates_and_change_nothing(z2v, home, ref, words):
    z2v("status")
    before = db_digest(home)
    result = z2v("log", ref, "30m", expect=2)
    assert words in result.output and "w1." in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert db_digest(home) == before


@pytest.mark.parametrize("args, words", [
    (("log", "w1.illustrated-transformer", "30"), "no unit"),
    (("log", "w1.illustrated-transformer", "25h"), "more than a day"),
    (("log", "w1.illustrated-transformer", "30m", "--on", "Nov 3"), "is not a date"),
    (("stop",), "no timer is running"),
    (("week", "12"), "there is no week 12"),
    (("plan", "start", "--on", "soon"), "is not a date"),
])
def test_usage_errors_are_one_line_and_change_nothing(z2v, home, args, words):
    z2v("status")
    before = db_digest(home)
    result = z2v(*args, expect=2)
    assert words in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert db_digest(home) == before


@pytest.mark.parametrize("content, words", [
    (b"", "empty"), (b"\x89PNG\r\n\x1a\n\x00\x00", "not a text file"), (b"hello\nworld\n", "no 'WEEK N"),
    (b"WEEK 1: A\nWEEK 1: B\n", "line 2: week 1 appears twice"),
])
def test_bad_plan_files_change_nothing(z2v, home, tmp_path, content, words):
    z2v("status")
    before = db_digest(home)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    result = z2v("plan", "import", str(bad), expect=2)
    assert words in result.output and str(bad) in result.output
    assert db_digest(home) == before
    assert words in z2v("plan", "show", "--file", str(bad), expect=2).output
    assert "No such file" in z2v("plan", "import", str(tmp_path / "missing.txt"), expect=2).output


def test_timer_start_stop_and_switch(z2v, home, monkeypatch):
    monkeypatch.setenv("ZERO2VLLM_NOW", "2026-11-24T20:00:00+00:00")
    z2v("start", "illustrated")
    monkeypatch.setenv("ZERO2VLLM_NOW", "2026-11-24T20:40:00+00:00")
    assert "Stopped w1.illustrated-transformer: logged 40m" in z2v("start", "w1.q-k-v").output
    monkeypatch.setenv("ZERO2VLLM_NOW", "2026-11-24T21:00:00+00:00")
    st = z2v.json("status")
    assert st["timer"]["item"] == "w1.q-k-v-matrices" and st["timer"]["elapsed_s"] == 1200
    z2v("stop")
    logged = store(home).seconds_by_item()
    assert (logged["w1.illustrated-transformer"], logged["w1.q-k-v-matrices"]) == (2400, 1200)
    z2v("undo")
    assert store(home).timer().item_id == "w1.q-k-v-matrices"


def test_a_killed_process_leaves_the_timer_recoverable(home):
    run_cli("plan", "start", "--on", "2026-11-23")
    run_cli("start", "illustrated")
    # a process that holds the write lock mid-change when it is killed: nothing half-written remains
    code = textwrap.dedent("""
        import sys, time
        from zero2vllm.tracker.store import Store
        s = Store.open(sys.argv[1])
        s.conn.execute("BEGIN IMMEDIATE")
        s.conn.execute("DELETE FROM timer")
        print("locked", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(home / "zero2vllm.db")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    st = run_cli("status", "--json")
    assert '"item": "w1.illustrated-transformer"' in st.stdout
    out = run_cli("stop").stdout
    assert "Stopped w1.illustrated-transformer" in out


def test_two_concurrent_writers_lose_nothing(home):
    run_cli("status")
    code = textwrap.dedent("""
        import sys
        from zero2vllm.tracker.store import Store
        s = Store.open(sys.argv[1])
        for i in range(150):
            s.log_time(sys.argv[2], "2026-11-24", 60, "concurrent log")
            if i % 10 == 0:
                s.change_status(sys.argv[2], "in_progress", "touch")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(home / "zero2vllm.db"), item])
             for item in ("w1.illustrated-transformer", "w1.q-k-v-matrices")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    counts = store(home).seconds_by_item()
    assert counts["w1.illustrated-transformer"] == counts["w1.q-k-v-matrices"] == 150 * 60


def test_migration_from_the_first_schema(tmp_path):
    path = tmp_path / "old.db"
    old = Store.open(path, migrate_to=1)
    assert old.schema_version == 1
    old.set_plan("WEEK 1: A\nRead: x\n", "old.txt")
    old.log_time("w1.x", "2026-01-05", 600, "log")
    old.close()
    new = Store.open(path)
    assert new.schema_version == SCHEMA_VERSION
    assert new.seconds_by_item() == {"w1.x": 600}
    assert new.get_plan()["source_name"] == "old.txt"
    assert new.lab_runs() == []
    new.add_lab_run("transformer", True, metrics={"val_loss": 1.8})
    assert new.lab_runs("transformer")[0]["metrics"] == {"val_loss": 1.8}


def test_newer_schema_is_refused(tmp_path, home):
    path = home / "zero2vllm.db"
    s = Store.open(path)
    s.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    s.close()
    proc = run_cli("status", check=False)
    assert proc.returncode == 2 and "newer than this zero2vllm" in proc.stderr


# -- the calendar: weeks, blocks, pace, projection, time zones ------------------------------------
def test_schedule_pace_and_projection_across_weeks(z2v, monkeypatch):
    z2v("plan", "start", "--on", "2026-11-02")
    # Saturday of week 2: weeks 1 (12 h lower budgets) + Mon-Fri of week 2 (6 h) are planned
    monkeypatch.setenv("ZERO2VLLM_NOW", "2026-11-14T10:00:00")
    z2v("log", "w1.illustrated-transformer", "4h", "--on", "2026-11-03")
    z2v("log", "w2.kv-cache-transformers", "2h", "--on", "2026-11-14")
    st = z2v.json("status")
    assert st["week_index"] == 2 and st["this_week"]["number"] == 2
    assert st["today_block"]["label"] == "Weekend"
    assert st["this_week"]["hours_logged"] == 2.0
    # the bundled plan's own annotations add nothing; budgets: 12+12+14+12+12+12+14+11 h
    assert st["hours"] == {"logged": 6.0, "planned_to_date": 18.0, "planned_total": 99.0, "pace": -12.0}
    # 6 h in 12 days; 93 h left at that rate -> 186 days after today
    assert round(93 / (6 / 12)) == 186
    assert st["projected_finish"] == "2027-05-19"
    monkeypatch.setenv("ZERO2VLLM_NOW", "2026-11-16T08:00:00")  # Monday: week 3 begins
    st = z2v.json("status")
    assert st["week_index"] == 3 and st["today_block"]["label"] == "Monday-Tuesday"
    assert st["this_week"]["hours_logged"] == 0


def test_before_and_after_the_plan(z2v, monkeypatch):
    z2v("plan", "start", "--on", "2026-12-07")
    monkeypatch.setenv("ZERO2VLLM_NOW", "2026-12-01T09:00:00")
    st = z2v.json("status")
    assert st["week_index"] == 0 and st["this_week"] is None
    assert "starts on 2026-12-07" in z2v("status").output
    monkeypatch.setenv("ZERO2VLLM_NOW", "2027-03-01T09:00:00")
    assert "ended on 2027-01-31" in z2v("status").output


@pytest.mark.parametrize("tz, day", [("UTC", "2026-11-15"), ("America/Los_Angeles", "2026-11-15"),
                                     ("Asia/Tokyo", "2026-11-16")])
def test_time_zones_decide_the_day(home, tz, day):
    """23:30 UTC on Sunday is still Sunday in UTC and Los Angeles, already Monday in Tokyo."""
    env = {"TZ": tz, "ZERO2VLLM_NOW": "2026-11-15T23:30:00+00:00"}
    if tz == "America/Los_Angeles":
        env["ZERO2VLLM_NOW"] = "2026-11-15T15:30:00+00:00"  # 07:30 Sunday there
    run_cli("plan", "start", "--on", "2026-11-09", env=env)
    run_cli("log", "w1.illustrated", "30m", env=env)
    out = run_cli("status", "--json", env=env).stdout
    import json

    st = json.loads(out)
    assert st["today"] == day
    assert st["week_index"] == (1 if day == "2026-11-15" else 2)
    assert [e.day for e in store(home).entries() if e.source == "log"] == [day]


def test_timer_across_midnight_is_split_across_the_days(z2v, home, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        monkeypatch.setenv("ZERO2VLLM_NOW", "2026-11-15T23:30:00+00:00")
        z2v("start", "illustrated")
        monkeypatch.setenv("ZERO2VLLM_NOW", "2026-11-16T00:45:00+00:00")
        assert "30m on 2026-11-15, 45m on 2026-11-16" in z2v("stop").output
        entries = [e for e in store(home).entries() if e.source == "timer"]
        assert [(e.day, e.seconds) for e in entries] == [("2026-11-15", 1800), ("2026-11-16", 2700)]
        assert entries[0].ended_at == entries[1].started_at == "2026-11-16T00:00:00+00:00"
        z2v("undo")  # one stop, one undo: both halves go
        assert store(home).entries() == [] and store(home).timer() is not None
    finally:
        monkeypatch.undo()
        time.tzset()


def test_tracker_commands_never_import_torch(home):
    code = ("import sys; from zero2vllm.cli import main\n"
            "for args in (['status'], ['week', '1'], ['next'], ['log', 'w1.illustrated', '5m'], ['history']):\n"
            "    main(args, standalone_mode=False)\n"
            "heavy = [m for m in ('torch', 'transformers', 'numpy', 'matplotlib', 'flask') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)


def test_plain_output_when_piped(home):
    out = run_cli("status").stdout
    assert "\x1b[" not in out and "#" in out or "-" in out
