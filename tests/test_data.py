"""`z2v export --all` / `z2v import --all` round trip, and `z2v backup` while another process writes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap

from zero2vllm.paths import default_plan_path
from zero2vllm.tracker.store import SCHEMA_VERSION, Store
from zero2vllm.tracker.syncstore import SYNC_TABLES

from conftest import DATA, run_cli


def snapshot(db) -> dict:
    """Every table's columns and rows (rows sorted, so row order on disk does not matter)."""
    conn = sqlite3.connect(db)
    try:
        out = {"user_version": conn.execute("PRAGMA user_version").fetchone()[0]}
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
            if name in SYNC_TABLES:  # one machine's sync marks and change log: an import starts its own
                continue
            cur = conn.execute(f'SELECT * FROM "{name}"')
            out[name] = ([d[0] for d in cur.description], sorted(map(tuple, cur.fetchall()), key=repr))
        return out
    finally:
        conn.close()


def populate(home, z2v, monkeypatch, tmp_path):
    """Something in every table: plan with progress, states, time, a running timer, notes, the
    journal (an undone change too), lab runs with evidence, cards and reviews, contrib settings and
    a locked prediction."""
    plan = default_plan_path().read_text().replace(
        "by Jay Alammar (1 hour) - https://jalammar.github.io/illustrated-transformer/",
        "by Jay Alammar (1 hour) - https://jalammar.github.io/illustrated-transformer/ - read 2 of 4 sections")
    (tmp_path / "plan.txt").write_text(plan)
    monkeypatch.setenv("ZERO2VLLM_NOW", "2025-03-04T09:00:00")
    z2v("plan", "import", str(tmp_path / "plan.txt"))
    z2v("plan", "start", "--on", "2025-03-03")
    z2v("log", "w1.intro", "1h15m", "--on", "2025-03-03", "--note", "first half, twice")
    z2v("start", "w1.lets-build")
    monkeypatch.setenv("ZERO2VLLM_NOW", "2025-03-04T10:07:31")
    z2v("stop")
    z2v("note", "w1.lets-build", "--text", "Attention = softmax(QK^T/sqrt(d)) V — unicode ✓")
    z2v("skip", "w1.focus")
    z2v("done", "w1.attention-all-you-need")
    z2v("undo")
    z2v("check", "summary", str(DATA / "summary_good.md"), "--week", "1")
    z2v("card", "add", "Why is decode memory-bound?", "each token reads all weights", "--week", "2")
    z2v("review", input="\n3\n\n1\n\n4\n")
    z2v("start", "w1.understand")  # left running
    s = Store.open(home / "zero2vllm.db")
    s.add_lab_run("kv-cache", True, kind="profile", duration_s=0.1 + 0.2, code_path="/x/y.py",
                  files_hash="ab" * 32, criteria=[{"name": "c", "passed": True, "detail": "ok"}],
                  metrics={"slope": 36864.000000001, "lengths": [1, 2, 3]}, artifacts=["/x/p.png"])
    from zero2vllm.contrib import predictions
    from zero2vllm.tracker import contrib_settings as settings

    settings.put(s, clone="/x/vllm", base="upstream/main")
    settings.lock_prediction(s, "code-map", "token_budget",
                             *predictions.lock("vllm/v1/core/sched/scheduler.py::Scheduler.schedule"))
    s.close()


def test_export_wipe_import_gives_back_the_same_store(home, z2v, monkeypatch, tmp_path):
    populate(home, z2v, monkeypatch, tmp_path)
    db = home / "zero2vllm.db"
    before = snapshot(db)
    assert before["user_version"] == SCHEMA_VERSION
    empty = [name for name, v in before.items() if name != "user_version" and not v[1]]
    assert not empty and len(before) == 1 + 11, empty

    out = tmp_path / "all.json"
    assert "Exported" in z2v("export", "--all", "-o", str(out)).output
    doc = json.loads(out.read_text())
    assert doc["format"] == "zero2vllm-export" and doc["schema_version"] == SCHEMA_VERSION

    for suffix in ("", "-wal", "-shm"):  # wipe
        (home / f"zero2vllm.db{suffix}").unlink(missing_ok=True)
    z2v("import", "--all", str(out))
    assert snapshot(db) == before

    # and it works: the running timer stops, undo reverses the last journalled change
    assert "Stopped w1.q-k-v-matrices" in z2v("stop").output
    z2v("undo")
    assert snapshot(db)["timer"] == before["timer"]

    # a second import into this (non-empty) store is refused and changes nothing
    again = snapshot(db)
    res = z2v("import", "--all", str(out), expect=2)
    assert "is not empty" in res.output and "import --all restores into an empty store only" in res.output
    assert snapshot(db) == again


def test_import_refuses_what_is_not_an_export(home, z2v, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"weeks": []}')
    assert "is not a zero2vllm export" in z2v("import", "--all", str(bad), expect=2).output
    bad.write_text("not json")
    assert "is not a JSON export" in z2v("import", "--all", str(bad), expect=2).output
    assert "--all" in z2v("import", str(bad), expect=2).output
    assert "--all" in z2v("export", expect=2).output
    # a row the schema rejects (a time entry of 0 seconds) aborts the whole import
    doc = {"format": "zero2vllm-export", "version": 1, "schema_version": SCHEMA_VERSION, "tables": {
        "plan": {"columns": ["id", "source_text", "source_name", "imported_at", "start_date"],
                 "rows": [[1, "WEEK 1: X\n", "x", "2025-01-01T00:00:00+00:00", None]]},
        "time_entry": {"columns": ["id", "item_id", "day", "seconds", "source", "created_at"],
                       "rows": [[1, "w1.x", "2025-01-01", 0, "log", "2025-01-01T00:00:00+00:00"]]}}}
    bad.write_text(json.dumps(doc))
    assert "nothing was imported" in z2v("import", "--all", str(bad), expect=2).output
    assert all(n == 0 for n in Store.open(home / "zero2vllm.db").row_counts().values())


WRITER = textwrap.dedent("""
    import sys, time
    from zero2vllm.tracker.store import Store
    store = Store.open(sys.argv[1])
    i = 0
    while True:
        i += 1
        entry = store.log_time("w1.intro-large-language-models", "2025-03-03", 60, f"log {i}", note=f"n{i}")
        print(entry, flush=True)  # printed only after the commit
        time.sleep(0.002)
""")


def test_backup_while_another_process_logs_time(home, z2v, tmp_path):
    z2v("status")  # creates the store with the bundled plan
    db = home / "zero2vllm.db"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        committed = {int(writer.stdout.readline()) for _ in range(200)}
        dest = tmp_path / "copy.db"
        proc = run_cli("backup", str(dest))  # a third process, while the writer goes on
        assert "integrity ok" in proc.stdout
        ok, counts = Store.check_file(dest)
        copy = sqlite3.connect(dest)
        ids = {r[0] for r in copy.execute("SELECT id FROM time_entry WHERE source = 'log'")}
        # the writer was never blocked: it goes on committing rows the snapshot does not hold
        line = writer.stdout.readline()
        while line and int(line) <= max(ids):
            line = writer.stdout.readline()
        assert line and writer.poll() is None
    finally:
        writer.kill()
        writer.wait()
    assert ok == "ok" and counts["time_entry"] == len(ids)
    assert committed <= ids  # every row committed before the backup started is in it
    live = sqlite3.connect(db)
    q = "SELECT * FROM time_entry WHERE id = ?"
    assert all(copy.execute(q, (i,)).fetchone() == live.execute(q, (i,)).fetchone() for i in committed)
    # journal entries match the time entries in the copy (one consistent snapshot)
    logs = copy.execute("SELECT COUNT(*) FROM journal WHERE action = 'log'").fetchone()[0]
    assert logs == len(ids)
    assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
    copy.close()
    live.close()
    assert not (tmp_path / "copy.db-wal").exists()
    assert "already exists" in z2v("backup", str(dest), expect=2).output
