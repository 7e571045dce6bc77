"""Sync between local stores and the group server (docs/group.md, "The sync protocol"): two
stores of one learner converge; duplicated pushes, undo, deletes, offline work; applying pulled
changes writes nothing new; one learner never sees another's; `z2v status` stays group-free."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from zero2vllm.tracker import syncstore
from zero2vllm.tracker.store import Store

from group_sync_util import local_rows, make_learner, projection_problems, served, server_rows


@pytest.fixture
def server(pg_url):
    from zero2vllm.group.app import create_app

    app = create_app(pg_url, testing=True, pool_size=4)
    with served(app) as base:
        yield {"app": app, "url": base, "db": pg_url}
    app.extensions["z2v_pool"].close()


def config_for(server, email):
    lid, token = make_learner(server["db"], email)
    return lid, {"url": server["url"], "token": token, "learner": {"id": lid, "email": email}}


def sync(store, config):
    from zero2vllm.group.client import sync as run_sync

    return run_sync(store, config)


def test_two_stores_of_one_learner_converge_and_the_server_agrees(server, tmp_path):
    lid, cfg = config_for(server, "ada@example.org")
    a, b = Store.open(tmp_path / "a.db"), Store.open(tmp_path / "b.db")
    a.set_plan("WEEK 1: A\nRead: x\n", "mine.txt")
    a.log_time("w1.x", "2026-11-30", 1800, "log", note="laptop")
    a.set_note("w1.x", "attention is a weighted sum", "note")
    a.add_lab_run("transformer", True, duration_s=0.1 + 0.2, criteria=[{"name": "c", "passed": True}],
                  metrics={"val_loss": 1.47, "steps": [1, 2]})
    b.log_time("w1.y", "2026-12-01", 600, "log")
    b.change_status("w1.x", "done", "done")
    b.add_cards([{"id": "u.q", "source": "user", "week": 1, "question": "Q?", "answer": "A", "fsrs": "{}",
                  "due": "2026-12-01", "created_at": "2026-12-01T00:00:00+00:00"}])
    b.record_review("u.q", "2026-12-01T10:00:00+00:00", 3, "{}", '{"s": 1}', "2026-12-03")

    first = sync(a, cfg)
    assert first["pushed"] == syncstore.total(a.conn) and first["duplicates"] == 0
    assert first["pulled"] == 0  # its own changes do not come back to it
    sync(b, cfg)
    sync(a, cfg)
    rows_a, rows_b = local_rows(a), local_rows(b)
    assert rows_a == rows_b == server_rows(server["db"], lid)
    assert rows_a[("item_state", "w1.x")]["status"] == "done"  # b's change is the later one
    assert rows_a[("plan", "1")]["source_name"] == "mine.txt"
    [run] = [r for (e, _), r in rows_b.items() if e == "lab_run"]
    assert run["duration_s"] == 0.1 + 0.2 and run["metrics"] == {"val_loss": 1.47, "steps": [1, 2]}
    assert sorted(e.seconds for e in b.entries()) == [600, 1800]
    assert projection_problems(server["db"], lid) == []
    assert syncstore.state(a.conn)["pending"] == syncstore.state(b.conn)["pending"] == 0


def test_applying_pulled_changes_writes_no_change_and_a_second_sync_moves_nothing(server, tmp_path):
    _, cfg = config_for(server, "bo@example.org")
    a, b = Store.open(tmp_path / "a.db"), Store.open(tmp_path / "b.db")
    for i in range(30):
        a.log_time(f"w1.i{i % 4}", "2026-11-30", 60 * (i + 1), "log")
    sync(a, cfg)
    before = syncstore.total(b.conn)
    out = sync(b, cfg)
    assert out["pulled"] == syncstore.total(a.conn) and out["applied"] == out["pulled"]
    assert syncstore.total(b.conn) == before  # nothing new to push back
    again = sync(b, cfg)
    assert again == {"pushed": 0, "duplicates": 0, "pulled": 0, "applied": 0}


def test_a_duplicated_push_changes_nothing(server, tmp_path):
    from zero2vllm.group import db

    lid, cfg = config_for(server, "cy@example.org")
    a = Store.open(tmp_path / "a.db")
    a.log_time("w1.x", "2026-11-30", 1800, "log")
    a.set_note("w1.x", "n", "note")
    changes, _ = syncstore.pending(a.conn, 100)
    client = server["app"].test_client()
    body = {"device": syncstore.state(a.conn)["device"], "changes": changes}
    headers = {"Authorization": f"Bearer {cfg['token']}"}
    first = client.post("/api/v1/sync/push", json=body, headers=headers).get_json()
    assert first["accepted"] == len(changes) and first["duplicates"] == 0
    with db.connect(server["db"]) as conn:
        snap = conn.execute("SELECT * FROM change_log ORDER BY seq").fetchall(), server_rows(server["db"], lid)
    # the same push again, and the same change twice in one push
    second = client.post("/api/v1/sync/push", json=body, headers=headers).get_json()
    assert second == {"accepted": 0, "duplicates": len(changes), "cursor": first["cursor"],
                      "previous": first["cursor"]}
    third = client.post("/api/v1/sync/push", json={**body, "changes": changes + changes[:1]},
                        headers=headers).get_json()
    assert third["accepted"] == 0 and third["duplicates"] == len(changes) + 1
    with db.connect(server["db"]) as conn:
        assert (conn.execute("SELECT * FROM change_log ORDER BY seq").fetchall(),
                server_rows(server["db"], lid)) == snap


def test_offline_work_goes_with_the_next_sync(server, tmp_path):
    lid, cfg = config_for(server, "di@example.org")
    a = Store.open(tmp_path / "a.db")
    a.log_time("w1.x", "2026-11-30", 600, "log")
    dead = {**cfg, "url": "http://127.0.0.1:9"}  # nothing listens on the discard port
    from zero2vllm.group.client import GroupError

    with pytest.raises(GroupError, match="cannot reach the group server"):
        sync(a, dead)
    a.log_time("w1.x", "2026-12-01", 900, "log")
    assert syncstore.state(a.conn)["pending"] == syncstore.total(a.conn)
    sync(a, cfg)
    assert sorted(r["seconds"] for (e, _), r in server_rows(server["db"], lid).items() if e == "time_entry") == [600, 900]


def test_undo_edits_and_deletes_sync(server, tmp_path):
    lid, cfg = config_for(server, "ed@example.org")
    a, b = Store.open(tmp_path / "a.db"), Store.open(tmp_path / "b.db")
    keep = a.log_time("w1.x", "2026-11-30", 600, "log")
    gone = a.log_time("w1.x", "2026-11-30", 1200, "log")
    sync(a, cfg), sync(b, cfg)
    assert b.count_entries() == 2
    a.edit_entry(keep, "edit", seconds=900)
    a.delete_entry(gone, "delete")
    a.set_note("w1.x", "first", "note")
    sync(a, cfg), sync(b, cfg)
    assert [e.seconds for e in b.entries()] == [900] and b.note("w1.x") == "first"
    a.undo_last()  # the note goes
    a.undo_last()  # the deleted entry comes back, with its uid
    sync(a, cfg), sync(b, cfg)
    assert sorted(e.seconds for e in b.entries()) == [900, 1200] and b.note("w1.x") is None
    # b deletes what a made; a pulls the deletion
    b.delete_entry(next(e.id for e in b.entries() if e.seconds == 900), "delete")
    sync(b, cfg), sync(a, cfg)
    assert [e.seconds for e in a.entries()] == [1200]
    assert local_rows(a) == local_rows(b) == server_rows(server["db"], lid)
    assert projection_problems(server["db"], lid) == []


def test_one_learner_never_sees_another_and_cannot_take_their_ids(server, tmp_path):
    from zero2vllm.group import db

    lid1, cfg1 = config_for(server, "fay@example.org")
    lid2, cfg2 = config_for(server, "gus@example.org")
    a, other = Store.open(tmp_path / "a.db"), Store.open(tmp_path / "o.db")
    a.log_time("w1.secret", "2026-11-30", 600, "log")
    a.set_note("w1.secret", "private", "note")
    sync(a, cfg1)
    out = sync(other, cfg2)
    assert out["pulled"] == 0 and local_rows(other) == {} and server_rows(server["db"], lid2) == {}
    # a replay of learner 1's change ids under learner 2's token: 409, and nothing of it stored
    syncstore.bind_server(a, "elsewhere")  # resets the marks: everything is pending again
    changes, _ = syncstore.pending(a.conn, 100)
    mine = {"id": "f" * 32, "entity": "note", "key": "w1.z", "version": 5, "device": "e" * 32,
            "deleted": False, "row": {"item_id": "w1.z", "text": "t", "updated_at": "x"}}
    with db.connect(server["db"]) as conn:
        count = conn.execute("SELECT count(*) AS n FROM change_log").fetchone()["n"]
    res = server["app"].test_client().post(
        "/api/v1/sync/push", json={"device": "e" * 32, "changes": [mine] + changes},
        headers={"Authorization": f"Bearer {cfg2['token']}"})
    assert res.status_code == 409 and "another learner" in res.get_json()["error"]["message"]
    with db.connect(server["db"]) as conn:
        assert conn.execute("SELECT count(*) AS n FROM change_log").fetchone()["n"] == count
    assert server_rows(server["db"], lid2) == {}
    pulled = server["app"].test_client().get("/api/v1/sync/pull?after=0",
                                             headers={"Authorization": f"Bearer {cfg2['token']}"}).get_json()
    assert pulled == {"changes": [], "next": 0, "more": False}
    assert server["app"].test_client().get("/api/v1/sync/pull").status_code == 401


def test_pull_pages_with_after_and_limit(server, tmp_path):
    _, cfg = config_for(server, "hal@example.org")
    a = Store.open(tmp_path / "a.db")
    with a.transaction():
        for i in range(25):
            a.add_entry("w1.x", "2026-11-30", 60 + i)
    sync(a, cfg)
    client, headers = server["app"].test_client(), {"Authorization": f"Bearer {cfg['token']}"}
    seen, after = [], 0
    while True:
        page = client.get(f"/api/v1/sync/pull?after={after}&limit=10", headers=headers).get_json()
        seen += [c["id"] for c in page["changes"]]
        after = page["next"]
        if not page["more"]:
            break
    assert len(seen) == len(set(seen)) == 25
    for bad in ("after=-1", "limit=0", "limit=5001", "after=x"):
        assert client.get(f"/api/v1/sync/pull?{bad}", headers=headers).status_code == 400


def test_the_bundled_plan_of_a_new_machine_loses_to_the_learners_plan(server, tmp_path):
    _, cfg = config_for(server, "ivy@example.org")
    a, b = Store.open(tmp_path / "a.db"), Store.open(tmp_path / "b.db")
    a.set_plan("WEEK 1: Mine\nRead: x\n", "mine.txt")
    sync(a, cfg)
    assert b.set_plan_if_none("WEEK 1: Bundled\nRead: y\n", "bundled")  # b's first command, later
    sync(b, cfg), sync(a, cfg)
    assert a.get_plan()["source_name"] == b.get_plan()["source_name"] == "mine.txt"


def test_cli_sync_and_status(server, home, z2v, monkeypatch):
    from zero2vllm.group.client import save_config

    monkeypatch.setenv("ZERO2VLLM_NOW", "2026-12-01T12:00:00")  # the plan starts on 2026-11-30, whatever today is

    _, cfg = config_for(server, "jo@example.org")
    status = z2v.json("sync", "--status")
    assert status["server"] is None
    save_config(home, cfg)
    assert stat.S_IMODE(os.stat(home / "group.json").st_mode) == 0o600
    z2v("log", "w1.intro-large-language-models", "30m", "--on", "2026-11-30")
    status = z2v.json("sync", "--status")
    assert status["server"] == server["url"] and status["pending"] >= 2 and status["last_sync"] is None
    out = z2v("sync").output
    assert out.startswith("Pushed ") and "with http://127.0.0.1" in out
    status = z2v.json("sync", "--status")
    assert status["pending"] == 0 and status["last_sync"]
    assert "Left" in z2v("group", "leave").output and not (home / "group.json").exists()
    assert "has not joined" in z2v("sync", expect=2).output


def test_join_gets_a_token_and_keeps_it_private(home, z2v):
    """Against a stand-in for the accounts endpoints: what join sends, and what it keeps."""
    from flask import Flask, jsonify, request

    stand_in, got = Flask("stand_in"), []

    @stand_in.post("/api/v1/tokens")
    def tokens():
        got.append(request.get_json())
        if got[-1].get("password") != "s3cret pass":
            return jsonify(error={"code": 401, "message": "wrong e-mail or password"}), 401
        return jsonify(token="z2v_abc", id=1)

    @stand_in.get("/api/v1/me")
    def me():
        assert request.headers["Authorization"] == "Bearer z2v_abc"
        return jsonify(id=7, email="kim@example.org", name="Kim", role="learner")

    with served(stand_in) as url:
        res = z2v("group", "join", url + "/", "--invite", "inv123", "--email", "kim@example.org",
                  "--name", "Kim", "--password-stdin", input="s3cret pass\n")
        assert "Joined" in res.output and "s3cret" not in res.output
        assert got[0] == {"invite": "inv123", "email": "kim@example.org", "name": "Kim",
                          "password": "s3cret pass", "token_name": got[0]["token_name"]}
        saved = json.loads((home / "group.json").read_text())
        assert saved == {"url": url, "token": "z2v_abc",
                         "learner": {"id": 7, "email": "kim@example.org", "name": "Kim", "role": "learner"}}
        assert stat.S_IMODE(os.stat(home / "group.json").st_mode) == 0o600
        bad = z2v("group", "join", url, "--email", "kim@example.org", "--password-stdin", input="nope\n", expect=2)
        assert "wrong e-mail or password" in bad.output and "Traceback" not in bad.output
        assert set(got[1]) == {"email", "password", "name"} and got[1]["password"] == "nope"
        assert json.loads((home / "group.json").read_text())["token"] == "z2v_abc"  # kept as it was
    assert "not a server URL" in z2v("group", "join", "ftp://x", "--email", "a@b", "--password-stdin",
                                     input="p\n", expect=2).output


def test_status_never_imports_the_group_code(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "ZERO2VLLM_HOME": str(home), "NO_COLOR": "1"}
    for _ in range(2):  # the first run creates the store (the migration), the second is the usual one
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "zero2vllm", "status"],
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
        assert "zero2vllm.tracker.store" in imported
        assert not [m for m in imported if m.startswith("zero2vllm.group")]
        assert not {"psycopg", "flask", "argon2"} & {m.split(".")[0] for m in imported}


def test_a_bad_pull_answer_is_one_line_and_applies_nothing(tmp_path):
    from flask import Flask, jsonify

    from zero2vllm.group.client import GroupError

    bad = Flask("bad_server")
    change = {"id": "a" * 32, "entity": "note", "key": "w1.x", "version": 5, "device": "b" * 32, "deleted": False,
              "row": {"item_id": "w1.x", "text": "t", "updated_at": "x"}, "seq": 1}

    @bad.get("/api/v1/sync/pull")
    def pull():
        return jsonify(changes=[change, {**change, "id": "c" * 32, "entity": "timer", "seq": 2}], next=2, more=False)

    store = Store.open(tmp_path / "a.db")
    with served(bad) as url, pytest.raises(GroupError, match="cannot apply .*entity must be"):
        sync(store, {"url": url, "token": "t", "learner": {"id": 1}})
    assert store.note("w1.x") is None and syncstore.state(store.conn)["pull_cursor"] == 0


def test_a_store_from_before_sync_sends_what_it_already_held(server, tmp_path):
    lid, cfg = config_for(server, "lee@example.org")
    old = Store.open(tmp_path / "old.db", migrate_to=6)
    old.set_plan("WEEK 1: A\nRead: x\n", "old.txt")
    entry = old.log_time("w1.x", "2026-11-30", 600, "log")
    old.edit_entry(entry, "edit", note="before uids")
    old.add_lab_run("transformer", True, metrics={"val_loss": 1.5})
    old.close()
    store = Store.open(tmp_path / "old.db")  # migration 7: uids and a change for every row held
    uid = store.entries()[0].uid
    assert uid and syncstore.state(store.conn)["pending"] == 4  # plan, state, entry, run
    store.undo_last()  # the edit journalled before uids: the entry keeps its uid
    assert store.entries()[0].uid == uid
    sync(store, cfg)
    rows = server_rows(server["db"], lid)
    assert rows == local_rows(store)
    assert rows[("time_entry", uid)]["note"] is None and store.count_entries() == 1


def test_cli_sync_with_a_revoked_token_is_one_line(server, home, z2v):
    from zero2vllm.group import db
    from zero2vllm.group.client import save_config

    _, cfg = config_for(server, "max@example.org")
    save_config(home, cfg)
    with db.connect(server["db"]) as conn:
        conn.execute("UPDATE api_token SET revoked_at = now()")
    res = z2v("sync", expect=2)
    assert "refused the token" in res.output and "z2v group join" in res.output and "Traceback" not in res.output
