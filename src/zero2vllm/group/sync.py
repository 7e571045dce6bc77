"""The server's side of sync (docs/group.md, "The sync protocol"): a push stores its new changes
in `change_log`, all or nothing, and applies the winners by last-writer-wins per row into
`learner_row` and the typed projections (g_*) in the same transaction; a pull reads one
learner's journal after a cursor. Validation is in sync_check.py, HTTP in sync_api.py.
"""

from __future__ import annotations

import json

from zero2vllm.group.sync_check import MAX_CHANGES, SyncError, parse_body, validate

_LOCK = 7337002  # advisory lock class: one push at a time per learner, so seq follows commit order


def push(conn, learner_id: int, raw: bytes) -> dict:
    body = parse_body(raw)
    changes, repeated = validate(body["changes"])
    with conn.transaction():  # a savepoint: a 409 below undoes everything of this push
        conn.execute("SELECT pg_advisory_xact_lock(%s::int, %s::int)", (_LOCK, learner_id))
        previous = _last_seq(conn, learner_id)
        new = _insert_changes(conn, learner_id, changes)
        if len(new) < len(changes):
            fresh = {ch["id"] for ch in new}
            taken = conn.execute(
                "SELECT change_id FROM change_log WHERE change_id = ANY(%s) AND learner_id <> %s LIMIT 1",
                ([ch["id"] for ch in changes if ch["id"] not in fresh], learner_id)).fetchone()
            if taken:
                raise SyncError(409, f"change id {taken['change_id']} belongs to another learner; "
                                     "nothing of this push was stored")
        if new:
            _apply(conn, learner_id, new)
        cursor = _last_seq(conn, learner_id) if new else previous
    # previous: this learner's last seq before the push; a client whose pull cursor is there may
    # move it to cursor at once (everything in between is this push, which it has)
    return {"accepted": len(new), "duplicates": len(changes) - len(new) + repeated, "cursor": cursor,
            "previous": previous}


def _last_seq(conn, learner_id: int) -> int:
    return conn.execute("SELECT COALESCE(MAX(seq), 0) AS s FROM change_log WHERE learner_id = %s",
                        (learner_id,)).fetchone()["s"]


def _insert_changes(conn, learner_id: int, changes: list[dict]) -> list[dict]:
    """Insert the changes whose id is new, in batch order; returns those (the others are
    duplicates, or another learner's)."""
    if not changes:
        return []
    # one JSON parameter: PostgreSQL parses it faster than psycopg escapes thousands of array items
    rows = conn.execute(
        "INSERT INTO change_log (change_id, learner_id, entity, key, version, device, deleted, row)"
        " SELECT c.id, %s, c.entity, c.key, c.version, c.device, c.deleted, c.row"
        " FROM jsonb_to_recordset(%s::jsonb) AS c(id text, entity text, key text, version bigint,"
        " device text, deleted boolean, row jsonb, ord int)"
        " ORDER BY c.ord ON CONFLICT (change_id) DO NOTHING RETURNING change_id",
        (learner_id, json.dumps([{**ch, "ord": i} for i, ch in enumerate(changes)]))).fetchall()
    fresh = {r["change_id"] for r in rows}
    return [ch for ch in changes if ch["id"] in fresh]


def _order(ch: dict) -> tuple:
    return ch["version"], ch["device"], ch["id"]


def _apply(conn, learner_id: int, new: list[dict]) -> None:
    """Last writer wins per (entity, key): the greatest (version, device, id) of what is stored
    and what came in; the projections follow the rows that changed."""
    best: dict[tuple[str, str], dict] = {}
    for ch in new:
        k = (ch["entity"], ch["key"])
        if k not in best or _order(ch) > _order(best[k]):
            best[k] = ch
    ents, keys = [k[0] for k in best], [k[1] for k in best]
    old = {(r["entity"], r["key"]): r for r in conn.execute(
        "SELECT entity, key, version, device, change_id AS id, deleted, row FROM learner_row"
        " WHERE learner_id = %s AND (entity, key) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        (learner_id, ents, keys))}
    wins = [(old.get(k), ch) for k, ch in best.items() if k not in old or _order(ch) > _order(old[k])]
    if not wins:
        return
    conn.execute(
        "INSERT INTO learner_row (learner_id, entity, key, version, device, change_id, deleted, row)"
        " SELECT %s, c.entity, c.key, c.version, c.device, c.id, c.deleted, c.row"
        " FROM jsonb_to_recordset(%s::jsonb) AS c(entity text, key text, version bigint, device text,"
        " id text, deleted boolean, row jsonb)"
        " ON CONFLICT (learner_id, entity, key) DO UPDATE SET version = EXCLUDED.version,"
        " device = EXCLUDED.device, change_id = EXCLUDED.change_id, deleted = EXCLUDED.deleted, row = EXCLUDED.row",
        (learner_id, json.dumps([ch for _, ch in wins])))
    _project(conn, learner_id, [(None if o is None or o["deleted"] else o["row"], ch) for o, ch in wins])


def _project(conn, learner_id: int, wins: list[tuple[dict | None, dict]]) -> None:
    """Keep the g_* tables equal to the live rows of learner_row; g_day_total by deltas."""
    gone: dict[str, list] = {}
    put: dict[str, list] = {}
    day_delta: dict[str, int] = {}
    for before, ch in wins:
        row = None if ch["deleted"] else ch["row"]
        entity = ch["entity"]
        if entity == "time_entry":
            if before:
                day_delta[before["day"]] = day_delta.get(before["day"], 0) - before["seconds"]
            if row:
                day_delta[row["day"]] = day_delta.get(row["day"], 0) + row["seconds"]
        if entity not in _UPSERT:
            continue
        if row is None:
            gone.setdefault(entity, []).append(ch["key"])
        else:
            put.setdefault(entity, []).append(row)
    for entity, keys in gone.items():
        table, keycol = _TABLE[entity]
        conn.execute(f"DELETE FROM {table} WHERE learner_id = %s" + (f" AND {keycol} = ANY(%s)" if keycol else ""),
                     (learner_id, keys) if keycol else (learner_id,))
    for entity, rows in put.items():
        conn.execute(_UPSERT[entity], (learner_id, json.dumps(rows)))
    deltas = {d: s for d, s in day_delta.items() if s}
    if deltas:
        conn.execute(
            "INSERT INTO g_day_total (learner_id, day, seconds) SELECT %s, d.key::date, d.value::bigint"
            " FROM jsonb_each_text(%s::jsonb) AS d ON CONFLICT (learner_id, day)"
            " DO UPDATE SET seconds = g_day_total.seconds + EXCLUDED.seconds", (learner_id, json.dumps(deltas)))
        conn.execute("DELETE FROM g_day_total WHERE learner_id = %s AND seconds = 0 AND day = ANY(%s::date[])",
                     (learner_id, list(deltas)))
    conn.execute(
        "INSERT INTO g_activity (learner_id, last_change_at, last_day) VALUES (%s, now(),"
        " (SELECT MAX(day) FROM g_time_entry WHERE learner_id = %s)) ON CONFLICT (learner_id) DO UPDATE"
        " SET last_change_at = EXCLUDED.last_change_at, last_day = EXCLUDED.last_day", (learner_id, learner_id))


_TABLE = {"time_entry": ("g_time_entry", "uid"), "item_state": ("g_item_state", "item_id"),
          "note": ("g_note", "item_id"), "lab_run": ("g_lab_run", "uid"), "plan": ("g_plan", None)}
# entity -> the projection's columns (from the row, with their SQL types) and its conflict key
_PROJECTED = {
    "time_entry": ("uid text, item_id text, day date, seconds int, note text, source text", "learner_id, uid"),
    "item_state": ("item_id text, status text, updated_at text", "learner_id, item_id"),
    "note": ("item_id text, text text, updated_at text", "learner_id, item_id"),
    "lab_run": ("uid text, lab text, kind text, at text, passed boolean, criteria jsonb, metrics jsonb",
                "learner_id, uid"),
    "plan": ("source_text text, start_date text", "learner_id"),
}


def _upsert_sql(entity: str) -> str:
    table = _TABLE[entity][0]
    typed, conflict = _PROJECTED[entity]
    names = [c.split()[0] for c in typed.split(", ")]
    updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names if n not in conflict.split(", "))
    return (f"INSERT INTO {table} (learner_id, {', '.join(names)}) SELECT %s, {', '.join('r.' + n for n in names)}"
            f" FROM jsonb_to_recordset(%s::jsonb) AS r({typed}) ON CONFLICT ({conflict}) DO UPDATE SET {updates}")


_UPSERT = {entity: _upsert_sql(entity) for entity in _PROJECTED}


def pull(conn, learner_id: int, after, limit) -> dict:
    """This learner's accepted changes with seq above `after`, in order, at most `limit`."""
    try:
        after = int(after if after not in (None, "") else 0)
        limit = int(limit if limit not in (None, "") else 1000)
    except (TypeError, ValueError):
        raise SyncError(400, "after and limit must be integers") from None
    if not 0 <= after < 2 ** 63 or not 1 <= limit <= MAX_CHANGES:
        raise SyncError(400, f"after must be >= 0 and limit 1 to {MAX_CHANGES}")
    rows = conn.execute(
        "SELECT seq, change_id AS id, entity, key, version, device, deleted, row FROM change_log"
        " WHERE learner_id = %s AND seq > %s ORDER BY seq LIMIT %s", (learner_id, after, limit + 1)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return {"changes": rows, "next": rows[-1]["seq"] if rows else after, "more": more}
