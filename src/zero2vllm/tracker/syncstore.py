"""The local side of sync (docs/group.md, "The sync protocol"): standard library only.

Migration 7 (`MIGRATION_7`, appended to `store.MIGRATIONS`) gives time entries, lab runs and
reviews a stable `uid`, and puts SQLite triggers on every synced table, so that every write (a
CLI command, undo, the dashboard, an import) writes its change into `sync_change` in the same
transaction. A change's version is a hybrid logical clock: max(now in microseconds, highest
version seen + 1). `sync_row` holds the winning (version, device, change id) of every row, and
`apply_pulled` applies another machine's changes by the rule "greatest (version, device, id)
wins", with `sync_state.applying` set so that applying writes no change of its own.
"""

from __future__ import annotations

import json
import sqlite3

# entity -> (table, key column or None for the single plan row, [(column, kind)]). Kinds:
# text, int, real (JSON numbers, or null), bool (true/false), list / dict (JSON values kept in
# a text column). The local integer ids are not synced. Frozen for migration 7: a new column
# needs a new migration that recreates that table's triggers.
ENTITIES: dict[str, tuple[str, str | None, list[tuple[str, str]]]] = {
    "plan": ("plan", None, [("source_text", "text"), ("source_name", "text"),
                            ("imported_at", "text"), ("start_date", "text")]),
    "item_state": ("item_state", "item_id", [
        ("item_id", "text"), ("status", "text"), ("progress_done", "real"),
        ("progress_total", "real"), ("progress_unit", "text"), ("updated_at", "text")]),
    "time_entry": ("time_entry", "uid", [
        ("uid", "text"), ("item_id", "text"), ("day", "text"), ("seconds", "int"),
        ("started_at", "text"), ("ended_at", "text"), ("note", "text"), ("source", "text"),
        ("created_at", "text")]),
    "note": ("note", "item_id", [("item_id", "text"), ("text", "text"), ("updated_at", "text")]),
    "lab_run": ("lab_run", "uid", [
        ("uid", "text"), ("lab", "text"), ("kind", "text"), ("at", "text"), ("passed", "bool"),
        ("duration_s", "real"), ("code_path", "text"), ("files_hash", "text"),
        ("criteria", "list"), ("metrics", "dict"), ("artifacts", "list"), ("refused", "text"),
        ("isolation", "text")]),
    "card": ("card", "id", [
        ("id", "text"), ("source", "text"), ("week", "int"), ("question", "text"),
        ("answer", "text"), ("fsrs", "text"), ("due", "text"), ("created_at", "text"),
        ("suspended", "bool")]),
    "review": ("review", "uid", [
        ("uid", "text"), ("card_id", "text"), ("at", "text"), ("rating", "int"),
        ("fsrs_log", "text")]),
}
UID_TABLES = ("time_entry", "lab_run", "review")
SYNC_TABLES = ("sync_change", "sync_row", "sync_state")  # bookkeeping: not exported, not synced

_NEW_ID = "lower(hex(randomblob(16)))"
# 'now' has millisecond resolution in SQLite; +1 over the highest version seen keeps a store's
# own changes increasing within one millisecond and after pulling a change from a faster clock.
_HLC = ("MAX(CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) * 1000, "
        "(SELECT max_seen FROM sync_state) + 1)")


def _value(ref: str, kind: str) -> str:
    """SQL for one column of NEW/OLD as a JSON value of its kind."""
    if kind == "bool":
        return f"json(CASE WHEN {ref} THEN 'true' ELSE 'false' END)"
    if kind == "real":  # 17 digits: a float comes back bit for bit (json_object prints 15)
        return (f"CASE WHEN typeof({ref}) IN ('real', 'integer') AND abs({ref}) <= 1.7e308 "
                f"THEN json(printf('%!.17g', {ref})) END")
    if kind in ("list", "dict"):  # text that is not valid JSON (never written by z2v) -> empty
        empty = "'[]'" if kind == "list" else "'{}'"
        return f"CASE WHEN json_valid({ref}) THEN json({ref}) ELSE json({empty}) END"
    return ref


def _row_json(ref: str, columns: list[tuple[str, str]]) -> str:
    return "json_object(" + ", ".join(f"'{c}', {_value(f'{ref}.{c}', k)}" for c, k in columns) + ")"


def _insert_change(entity: str, key: str, deleted: bool, row: str, version: str = _HLC) -> str:
    return (f"INSERT INTO sync_change (change_id, entity, key, version, device, deleted, row) "
            f"SELECT {_NEW_ID}, '{entity}', {key}, {version}, device, {int(deleted)}, {row} "
            f"FROM sync_state WHERE {key} IS NOT NULL;")


def _triggers(entity: str, table: str, keycol: str | None, columns: list[tuple[str, str]]) -> str:
    new_key = f"NEW.{keycol}" if keycol else "'1'"
    old_key = f"OLD.{keycol}" if keycol else "'1'"
    live = "(SELECT applying FROM sync_state) <> 1"
    version = _HLC
    if entity == "plan":  # the bundled plan stored on first use loses to any real plan pulled
        version = (f"CASE WHEN (SELECT applying FROM sync_state) = 2 AND NOT EXISTS (SELECT 1 "
                   f"FROM sync_row WHERE entity = 'plan' AND key = '1') THEN 1 ELSE {_HLC} END")
    sql = []
    if keycol == "uid":  # rows inserted without a uid get one; that update writes the change
        sql.append(f"CREATE TRIGGER sync_{table}_uid AFTER INSERT ON {table} WHEN NEW.uid IS NULL "
                   f"BEGIN UPDATE {table} SET uid = {_NEW_ID} WHERE rowid = NEW.rowid; END;")
    sql.append(f"CREATE TRIGGER sync_{table}_ins AFTER INSERT ON {table} WHEN {live} BEGIN "
               + _insert_change(entity, new_key, False, _row_json("NEW", columns), version) + " END;")
    sql.append(f"CREATE TRIGGER sync_{table}_upd AFTER UPDATE ON {table} WHEN {live} BEGIN "
               + (_insert_change(entity, f"(CASE WHEN {old_key} IS NOT {new_key} THEN {old_key} END)",
                                 True, "NULL") if keycol else "")
               + _insert_change(entity, new_key, False, _row_json("NEW", columns), version) + " END;")
    sql.append(f"CREATE TRIGGER sync_{table}_del AFTER DELETE ON {table} WHEN {live} BEGIN "
               + _insert_change(entity, old_key, True, "NULL") + " END;")
    return "\n".join(sql)


def _backfill(entity: str, table: str, keycol: str | None, columns: list[tuple[str, str]]) -> str:
    key = f"t.{keycol}" if keycol else "'1'"
    return (f"INSERT INTO sync_change (change_id, entity, key, version, device, deleted, row) "
            f"SELECT {_NEW_ID}, '{entity}', {key}, {_HLC}, s.device, 0, {_row_json('t', columns)} "
            f"FROM {table} t, sync_state s ORDER BY t.rowid;")


def _migration_7() -> str:
    parts = [f"ALTER TABLE {t} ADD COLUMN uid TEXT;\nUPDATE {t} SET uid = {_NEW_ID};\n"
             f"CREATE UNIQUE INDEX {t}_uid ON {t} (uid);" for t in UID_TABLES]
    parts.append(f"""
    CREATE TABLE sync_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        device TEXT NOT NULL,
        applying INTEGER NOT NULL DEFAULT 0,    -- 1 while pulled changes are applied: no change
        max_seen INTEGER NOT NULL DEFAULT 0,    -- the highest version written or pulled (HLC)
        pushed_seq INTEGER NOT NULL DEFAULT 0,  -- sync_change.seq acknowledged by the server
        pull_cursor INTEGER NOT NULL DEFAULT 0, -- the server's seq pulled up to
        server TEXT,                            -- which server and learner the two marks are for
        last_sync_at TEXT
    );
    INSERT INTO sync_state (id, device) VALUES (1, {_NEW_ID});
    CREATE TABLE sync_change (
        seq INTEGER PRIMARY KEY,
        change_id TEXT NOT NULL UNIQUE,
        entity TEXT NOT NULL,
        key TEXT NOT NULL,
        version INTEGER NOT NULL,
        device TEXT NOT NULL,
        deleted INTEGER NOT NULL,
        row TEXT
    );
    CREATE TABLE sync_row (
        entity TEXT NOT NULL,
        key TEXT NOT NULL,
        version INTEGER NOT NULL,
        device TEXT NOT NULL,
        change_id TEXT NOT NULL,
        PRIMARY KEY (entity, key)
    );
    CREATE TRIGGER sync_change_seen AFTER INSERT ON sync_change BEGIN
        UPDATE sync_state SET max_seen = MAX(max_seen, NEW.version);
        INSERT INTO sync_row (entity, key, version, device, change_id)
            VALUES (NEW.entity, NEW.key, NEW.version, NEW.device, NEW.change_id)
            ON CONFLICT (entity, key) DO UPDATE SET version = excluded.version,
            device = excluded.device, change_id = excluded.change_id;
    END;""")
    for entity, (table, keycol, columns) in ENTITIES.items():
        parts.append(_backfill(entity, table, keycol, columns))
        parts.append(_triggers(entity, table, keycol, columns))
    return "\n".join(parts)


MIGRATION_7 = _migration_7()


# -- what the client reads and writes ----------------------------------------------------------
def state(conn: sqlite3.Connection) -> dict:
    row = dict(conn.execute("SELECT * FROM sync_state WHERE id = 1").fetchone())
    row["pending"] = conn.execute("SELECT COUNT(*) FROM sync_change WHERE seq > ?",
                                  (row["pushed_seq"],)).fetchone()[0]
    return row


def total(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM sync_change").fetchone()[0]


def known_ids(conn: sqlite3.Connection, ids: list) -> set[str]:
    """Which of these change ids this store wrote itself."""
    ids = [i for i in ids if isinstance(i, str)]
    found: set[str] = set()
    for start in range(0, len(ids), 500):  # under SQLite's limit on parameters
        part = ids[start:start + 500]
        found.update(r[0] for r in conn.execute(
            f"SELECT change_id FROM sync_change WHERE change_id IN ({','.join('?' * len(part))})", part))
    return found


def bind_server(store, server: str) -> None:
    """The marks are for one server and learner: another one starts from the beginning (a push
    of everything, counted as duplicates where the server has it already)."""
    with store.transaction() as c:
        if c.execute("SELECT server FROM sync_state").fetchone()[0] != server:
            c.execute("UPDATE sync_state SET server = ?, pushed_seq = 0, pull_cursor = 0", (server,))


def pending(conn: sqlite3.Connection, limit: int) -> tuple[list[dict], int]:
    """Up to `limit` local changes above the pushed mark, as the protocol's changes, and the
    seq of the last one (the mark to move to once the server has them)."""
    rows = conn.execute(
        "SELECT * FROM sync_change WHERE seq > (SELECT pushed_seq FROM sync_state) ORDER BY seq LIMIT ?",
        (limit,)).fetchall()
    changes = [{"id": r["change_id"], "entity": r["entity"], "key": r["key"], "version": r["version"],
                "device": r["device"], "deleted": bool(r["deleted"]),
                "row": None if r["row"] is None else json.loads(r["row"])} for r in rows]
    return changes, (rows[-1]["seq"] if rows else 0)


def mark_pushed(store, seq: int, previous: int | None = None, cursor: int | None = None) -> None:
    """Move the pushed mark to `seq`; and the pull cursor from `previous` to `cursor` when it
    stood at `previous` (the server's last seq before this push: what lies between is ours)."""
    with store.transaction() as c:
        c.execute("UPDATE sync_state SET pushed_seq = MAX(pushed_seq, ?)", (seq,))
        if isinstance(previous, int) and isinstance(cursor, int) and cursor >= previous:
            c.execute("UPDATE sync_state SET pull_cursor = ? WHERE pull_cursor = ?", (cursor, previous))


def mark_synced(store, at: str) -> None:
    with store.transaction() as c:
        c.execute("UPDATE sync_state SET last_sync_at = ?", (at,))


def _sql_value(value, kind: str):
    if value is None:
        return None
    if kind == "bool":
        return int(bool(value))
    if kind in ("list", "dict"):
        return json.dumps(value)
    return value


def apply_pulled(store, changes: list[dict], cursor: int) -> int:
    """Apply pulled changes by last-writer-wins per row and move the pull cursor to `cursor`,
    in one transaction; returns how many rows changed here. Writes no change of its own."""
    applied = 0
    with store.transaction() as c:
        c.execute("UPDATE sync_state SET applying = 1")
        seen = c.execute("SELECT max_seen FROM sync_state").fetchone()[0]
        for ch in changes:
            entity, key = ch["entity"], ch["key"]
            seen = max(seen, ch["version"])
            now = c.execute("SELECT version, device, change_id FROM sync_row WHERE entity = ? AND key = ?",
                            (entity, key)).fetchone()
            if now is not None and tuple(now) >= (ch["version"], ch["device"], ch["id"]):
                continue
            _write_row(c, entity, key, None if ch["deleted"] else ch["row"])
            c.execute("INSERT INTO sync_row (entity, key, version, device, change_id) VALUES (?, ?, ?, ?, ?)"
                      " ON CONFLICT (entity, key) DO UPDATE SET version = excluded.version,"
                      " device = excluded.device, change_id = excluded.change_id",
                      (entity, key, ch["version"], ch["device"], ch["id"]))
            applied += 1
        c.execute("UPDATE sync_state SET applying = 0, max_seen = ?, pull_cursor = MAX(pull_cursor, ?)",
                  (seen, cursor))
    return applied


def _write_row(c: sqlite3.Connection, entity: str, key: str, row: dict | None) -> None:
    table, keycol, columns = ENTITIES[entity]
    where = f"{keycol} = ?" if keycol else "id = 1"
    if row is None:
        c.execute(f"DELETE FROM {table} WHERE {where}", (key,) if keycol else ())
        return
    names = [name for name, _ in columns]
    values = [_sql_value(row.get(name), kind) for name, kind in columns]
    if keycol is None:
        names, values = ["id"] + names, [1] + values
    conflict = keycol or "id"
    updates = ", ".join(f"{n} = excluded.{n}" for n in names if n != conflict)
    c.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
              f" ON CONFLICT ({conflict}) DO UPDATE SET {updates}", values)
