"""Shared by the sync tests: a group server on a real port, learners with tokens, and the
synced rows of a local store and of the server, in one comparable shape."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager

from zero2vllm.tracker.syncstore import ENTITIES


def make_learner(url: str, email: str) -> tuple[int, str]:
    """(account id, API token) of a new learner."""
    from zero2vllm.group import auth, db

    with db.connect(url) as conn:
        db.migrate(conn)
        lid = auth.create_account(conn, email, email.split("@")[0], "learner", "pw-" + email)
        return lid, auth.issue_token(conn, lid, "test")


@contextmanager
def served(app):
    """The app on 127.0.0.1 (a free port) in a thread: its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def local_rows(store) -> dict[tuple[str, str], dict]:
    """Every synced row of a local store, keyed (entity, key), as the protocol's row dicts."""
    out = {}
    for entity, (table, keycol, columns) in ENTITIES.items():
        for r in store.conn.execute(f"SELECT * FROM {table}"):
            row = {}
            for name, kind in columns:
                v = r[name]
                if kind == "bool":
                    v = bool(v)
                elif kind in ("list", "dict"):
                    v = json.loads(v)
                row[name] = v
            out[(entity, r[keycol] if keycol else "1")] = row
    return out


def server_rows(url: str, learner_id: int) -> dict[tuple[str, str], dict]:
    """The live (not deleted) rows of learner_row for one learner."""
    from zero2vllm.group import db

    with db.connect(url) as conn:
        rows = conn.execute("SELECT entity, key, row FROM learner_row WHERE learner_id = %s AND NOT deleted",
                            (learner_id,)).fetchall()
    return {(r["entity"], r["key"]): r["row"] for r in rows}


def projection_problems(url: str, learner_id: int) -> list[str]:
    """Where the projections disagree with learner_row (an empty list when they agree)."""
    from zero2vllm.group import db

    live = server_rows(url, learner_id)
    problems = []
    with db.connect(url) as conn:
        q = lambda sql: conn.execute(sql, (learner_id,)).fetchall()  # noqa: E731
        te = {r["uid"]: (r["item_id"], str(r["day"]), r["seconds"], r["note"], r["source"])
              for r in q("SELECT * FROM g_time_entry WHERE learner_id = %s")}
        want = {k: (r["item_id"], r["day"], r["seconds"], r["note"], r["source"])
                for (e, k), r in live.items() if e == "time_entry"}
        if te != want:
            problems.append(f"g_time_entry: {len(te)} rows, learner_row has {len(want)} (or they differ)")
        totals = {str(r["day"]): r["seconds"] for r in q("SELECT * FROM g_day_total WHERE learner_id = %s")}
        sums: dict[str, int] = {}
        for _, day, seconds, _, _ in want.values():
            sums[day] = sums.get(day, 0) + seconds
        if totals != sums:
            problems.append(f"g_day_total {totals} != the sums of the entries {sums}")
        for entity, table, cols in (("item_state", "g_item_state", ("status", "updated_at")),
                                    ("note", "g_note", ("text", "updated_at"))):
            got = {r["item_id"]: tuple(r[c] for c in cols) for r in q(f"SELECT * FROM {table} WHERE learner_id = %s")}
            exp = {k: tuple(r[c] for c in cols) for (e, k), r in live.items() if e == entity}
            if got != exp:
                problems.append(f"{table} differs from learner_row")
        labs = {r["uid"]: (r["lab"], r["passed"], r["criteria"], r["metrics"])
                for r in q("SELECT * FROM g_lab_run WHERE learner_id = %s")}
        exp = {k: (r["lab"], r["passed"], r["criteria"], r["metrics"]) for (e, k), r in live.items() if e == "lab_run"}
        if labs != exp:
            problems.append("g_lab_run differs from learner_row")
    return problems
