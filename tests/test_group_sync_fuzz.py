"""Bad sync payloads get a 4xx naming what is wrong, never a 500, and change nothing on the
server (a digest of every sync table before and after each)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random

import pytest

from zero2vllm.tracker import syncstore
from zero2vllm.tracker.store import Store

from group_sync_util import make_learner

SYNC_TABLES = ("change_log", "learner_row", "g_time_entry", "g_day_total", "g_item_state", "g_note",
               "g_lab_run", "g_plan", "g_activity")


@pytest.fixture
def env(pg_url, tmp_path):
    from zero2vllm.group.app import create_app

    app = create_app(pg_url, testing=True, pool_size=2)
    lid, token = make_learner(pg_url, "ann@example.org")
    _, other = make_learner(pg_url, "bob@example.org")
    store = Store.open(tmp_path / "a.db")
    store.set_plan("WEEK 1: A\nRead: x\n", "p.txt")
    store.log_time("w1.x", "2026-11-30", 600, "log", note="n")
    store.set_note("w1.x", "a note", "note")
    store.add_lab_run("transformer", False, criteria=[{"name": "loss", "passed": False}], metrics={"v": 1.5})
    store.add_cards([{"id": "u.q", "source": "user", "week": 1, "question": "Q?", "answer": None, "fsrs": "{}",
                      "due": "2026-12-01", "created_at": "2026-12-01T00:00:00+00:00"}])
    store.record_review("u.q", "2026-12-01T10:00:00+00:00", 3, "{}", "{}", "2026-12-03")
    changes, _ = syncstore.pending(store.conn, 1000)
    device = syncstore.state(store.conn)["device"]
    client = app.test_client()
    half = len(changes) // 2  # half of them stored, so replays and LWW have something to meet
    res = client.post("/api/v1/sync/push", json={"device": device, "changes": changes[:half]},
                      headers={"Authorization": f"Bearer {token}"})
    assert res.status_code == 200
    yield {"app": app, "client": client, "url": pg_url, "changes": changes, "device": device,
           "auth": {"Authorization": f"Bearer {token}"}, "other": {"Authorization": f"Bearer {other}"}}
    app.extensions["z2v_pool"].close()


def digest(url: str) -> str:
    from zero2vllm.group import db

    h = hashlib.sha256()
    with db.connect(url) as conn:
        for table in SYNC_TABLES:
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2"):
                h.update(repr(sorted(row.items())).encode())
    return h.hexdigest()


def post(env, body, headers=None, raw: bytes | None = None):
    data = raw if raw is not None else json.dumps(body).encode()
    return env["client"].post("/api/v1/sync/push", data=data, content_type="application/json",
                              headers=headers or env["auth"])


def refused(env, expect: int, *, body=None, raw=None, headers=None, says: str | None = None):
    before = digest(env["url"])
    res = post(env, body, headers, raw)
    assert res.status_code == expect, (res.status_code, res.get_data()[:300])
    message = res.get_json()["error"]["message"]
    if says:
        assert says in message, message
    assert digest(env["url"]) == before
    return message


def batch(env, changes):
    return {"device": env["device"], "changes": changes}


def test_malformed_bodies(env):
    refused(env, 400, raw=b"not json", says="not JSON")
    refused(env, 400, raw=b'{"device": "\xff\xfe"}', says="not UTF-8")
    refused(env, 400, raw=b"[" * 100000 + b"]" * 100000, says="nested too deeply")
    refused(env, 400, raw=b'{"device": "' + b"a" * 32 + b'", "changes": [NaN]}', says="not JSON")
    refused(env, 400, raw=b'{"x": ' + b"9" * 5000 + b"}", says="not JSON")
    refused(env, 400, body=[], says="the body must be")
    refused(env, 400, body={"device": "a" * 32}, says="the body must be")
    refused(env, 400, body={"device": "a" * 32, "changes": [], "extra": 1}, says="the body must be")
    refused(env, 400, body={"device": "A" * 32, "changes": []}, says="device")
    refused(env, 400, body={"device": "a" * 32, "changes": {}}, says="changes must be a list")


def test_bad_changes_are_named_and_nothing_of_the_batch_is_stored(env):
    good = env["changes"]
    te = next(c for c in good if c["entity"] == "time_entry")
    lab = next(c for c in good if c["entity"] == "lab_run")
    cases = [
        ({**te, "id": 5}, "id must be"), ({**te, "id": "F" * 32}, "id must be"), ({**te, "id": "a" * 31}, "id must be"),
        ({**te, "entity": "timer"}, "entity must be"), ({**te, "key": 7}, "key must be"),
        ({**te, "key": "k" * 201}, "key must be"), ({**te, "key": "x"}, "uid"),
        ({**te, "version": "1"}, "version"), ({**te, "version": True}, "version"), ({**te, "version": 0}, "version"),
        ({**te, "version": 2 ** 63}, "version"), ({**te, "deleted": "no"}, "deleted"),
        ({**te, "deleted": True}, "row must be null"), ({**te, "row": []}, "row must be an object"),
        ({**te, "row": None}, "row must be an object"), ({k: v for k, v in te.items() if k != "row"}, "missing row"),
        ({**te, "seq": 1}, "unknown seq"),
        ({**te, "row": {**te["row"], "extra": 1}}, "unknown extra"),
        ({**te, "row": {k: v for k, v in te["row"].items() if k != "day"}}, "missing day"),
        ({**te, "row": {**te["row"], "seconds": "600"}}, "row.seconds must be an int"),
        ({**te, "row": {**te["row"], "seconds": 0}}, "row.seconds"),
        ({**te, "row": {**te["row"], "seconds": 1.5}}, "row.seconds must be an int"),
        ({**te, "row": {**te["row"], "day": "2026-13-01"}}, "row.day"),
        ({**te, "row": {**te["row"], "item_id": None}}, "may not be null"),
        ({**te, "row": {**te["row"], "note": "nul\x00byte"}}, "NUL"),
        ({**te, "row": {**te["row"], "note": "\ud800"}}, "surrogate"),
        ({**te, "row": {**te["row"], "uid": "b" * 32}}, "must equal the key"),
        ({**lab, "row": {**lab["row"], "passed": 1}}, "row.passed must be a bool"),
        ({**lab, "row": {**lab["row"], "metrics": []}}, "row.metrics must be a dict"),
        ({**lab, "row": {**lab["row"], "metrics": {"v": "__INF__"}}}, "finite"),  # 1e400 parses as inf
        ({**lab, "row": {**lab["row"], "metrics": {"deep": json.loads("[" * 30 + "]" * 30)}}}, "nested deeper"),
    ]
    for change, says in cases:
        raw = json.dumps(batch(env, good + [change])).replace('"__INF__"', "1e400").encode()
        message = refused(env, 400, raw=raw, says=says)
        assert message.startswith(f"change {len(good)}"), message


def test_every_column_of_every_entity_refuses_a_wrong_type(env):
    wrong = {"text": 5, "int": "5", "real": "1.5", "bool": "true", "list": {}, "dict": []}
    for change in env["changes"]:
        if change["deleted"]:
            continue
        _, keycol, columns = syncstore.ENTITIES[change["entity"]]
        for name, kind in columns:
            bad = copy.deepcopy(change)
            bad["row"][name] = wrong[kind]
            refused(env, 400, body=batch(env, [bad]), says=f"row.{name}")


def test_replayed_ids_of_another_learner_are_a_409(env):
    stored = env["changes"][: len(env["changes"]) // 2]
    mine = copy.deepcopy(env["changes"][-1])
    mine["id"] = "0" * 32
    refused(env, 409, body=batch(env, [mine, stored[0]]), headers=env["other"], says="another learner")
    # a replay with changed contents: still theirs, still 409
    refused(env, 409, body=batch(env, [{**stored[0], "version": stored[0]["version"] + 1}]),
            headers=env["other"], says="another learner")


def test_huge_batches_and_bodies_are_a_413(env):
    te = next(c for c in env["changes"] if c["entity"] == "time_entry")
    many = [{**te, "id": f"{i:032x}"} for i in range(5001)]
    refused(env, 413, body=batch(env, many), says="at most 5000")
    refused(env, 413, raw=b'{"device": "' + b"a" * 32 + b'", "changes": ["' + b"x" * (9 << 20) + b'"]}')


def test_tokens_and_pull_parameters(env):
    refused(env, 401, body=batch(env, []), headers={"Authorization": "Bearer z2v_nope"})
    refused(env, 401, body=batch(env, []), headers={"Authorization": "Basic abc"})
    for query in ("after=x", "after=-1", "limit=0", "limit=99999", "after=1e99", "limit=%00",
                  "after=" + "9" * 40):
        res = env["client"].get(f"/api/v1/sync/pull?{query}", headers=env["auth"])
        assert res.status_code == 400, (query, res.status_code)


def test_random_mutations_never_500_and_refusals_change_nothing(env):
    seed = int(os.environ.get("Z2V_FUZZ_SEED") or random.randrange(1 << 30))
    print(f"fuzz seed {seed} (Z2V_FUZZ_SEED={seed} repeats it)")
    rng = random.Random(seed)
    values = [None, True, False, 0, -1, 2 ** 63, 1.5, float("nan"), "", "x" * 300, "\x00", "\ud800", [],
              {}, [[[]]], {"a": {"b": [1]}}, "2026-02-30", "f" * 32, "todo"]
    for _ in range(100):
        change = copy.deepcopy(rng.choice(env["changes"]))
        change["id"] = "%032x" % rng.getrandbits(128)
        target = change["row"] if change["row"] and rng.random() < 0.7 else change
        field = rng.choice(sorted(target))
        target[field] = rng.choice(values)
        before = digest(env["url"])
        res = post(env, None, raw=json.dumps(batch(env, [change])).encode())
        assert res.status_code in (200, 400, 409, 413), (seed, change, res.get_data()[:300])
        if res.status_code != 200:
            assert digest(env["url"]) == before, (seed, change)
