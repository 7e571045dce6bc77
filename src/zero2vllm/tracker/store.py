"""The progress store: SQLite through the standard library, every SQL statement in this module.

Schema changes are numbered migrations (`MIGRATIONS`), applied in order and recorded in
`PRAGMA user_version`; never edit a migration that has shipped, append a new one.
Writes run inside `BEGIN IMMEDIATE` transactions with WAL and a busy timeout, so a timer in one
terminal and a `log` in another never lose each other's rows.

Every change a user can make is journalled with what it takes to reverse it, so `z2v undo`
works for all of them the same way.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from zero2vllm.tracker import syncstore

MIGRATIONS: list[str] = [
    # 1: the plan, per-item state, time entries, the running timer, notes, the undo journal.
    """
    CREATE TABLE plan (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        source_text TEXT NOT NULL,
        source_name TEXT NOT NULL,
        imported_at TEXT NOT NULL,
        start_date TEXT
    );
    CREATE TABLE item_state (
        item_id TEXT PRIMARY KEY,
        status TEXT NOT NULL CHECK (status IN ('todo', 'in_progress', 'done', 'skipped')),
        progress_done REAL,
        progress_total REAL,
        progress_unit TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE time_entry (
        id INTEGER PRIMARY KEY,
        item_id TEXT NOT NULL,
        day TEXT NOT NULL,
        seconds INTEGER NOT NULL CHECK (seconds > 0),
        started_at TEXT,
        ended_at TEXT,
        note TEXT,
        source TEXT NOT NULL DEFAULT 'log',
        created_at TEXT NOT NULL
    );
    CREATE INDEX time_entry_day ON time_entry (day);
    CREATE INDEX time_entry_item ON time_entry (item_id);
    CREATE TABLE timer (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        item_id TEXT NOT NULL,
        started_at TEXT NOT NULL
    );
    CREATE TABLE note (
        item_id TEXT PRIMARY KEY,
        text TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE journal (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        action TEXT NOT NULL,
        item_id TEXT,
        summary TEXT NOT NULL,
        undo TEXT NOT NULL,
        undone INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 2: lab runs (checks, training runs, benchmarks) and the evidence they leave.
    """
    CREATE TABLE lab_run (
        id INTEGER PRIMARY KEY,
        lab TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'check',
        at TEXT NOT NULL,
        passed INTEGER NOT NULL,
        duration_s REAL,
        code_path TEXT,
        files_hash TEXT,
        criteria TEXT NOT NULL DEFAULT '[]',
        metrics TEXT NOT NULL DEFAULT '{}',
        artifacts TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX lab_run_lab ON lab_run (lab, at);
    """,
    # 3: flashcards (from the plan's key concepts, or the learner's own) and their FSRS reviews.
    """
    CREATE TABLE card (
        id TEXT PRIMARY KEY,
        source TEXT NOT NULL CHECK (source IN ('plan', 'user')),
        week INTEGER,
        question TEXT NOT NULL,
        answer TEXT,
        fsrs TEXT NOT NULL,
        due TEXT NOT NULL,
        created_at TEXT NOT NULL,
        suspended INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX card_due ON card (due);
    CREATE TABLE review (
        id INTEGER PRIMARY KEY,
        card_id TEXT NOT NULL,
        at TEXT NOT NULL,
        rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 4),
        fsrs_log TEXT NOT NULL
    );
    CREATE INDEX review_card ON review (card_id, at);
    """,
    # 4: covering indexes for the per-day and per-item sums that status and the dashboard run.
    """
    CREATE INDEX time_entry_day_seconds ON time_entry (day, seconds);
    CREATE INDEX time_entry_item_seconds ON time_entry (item_id, seconds);
    """,
    # 5: the learner's vLLM clone and PR (`z2v contrib`), and locked predictions (hashed until
    #    revealed), for the contribution labs of weeks 4-8.
    """
    CREATE TABLE contrib_setting (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE prediction (
        id INTEGER PRIMARY KEY,
        lab TEXT NOT NULL,
        name TEXT NOT NULL,
        digest TEXT NOT NULL,
        salt TEXT NOT NULL,
        locked_at TEXT NOT NULL,
        revealed_at TEXT,
        answer TEXT,
        UNIQUE (lab, name)
    );
    """,
    # 6: a check whose results were refused (forged or tampered with) says why, and every check
    #    says which sandbox it ran in.
    """
    ALTER TABLE lab_run ADD COLUMN refused TEXT;
    ALTER TABLE lab_run ADD COLUMN isolation TEXT;
    """,
    # 7: sync with a group server (tracker/syncstore.py): uids for time entries, lab runs and
    #    reviews; a change log written by triggers in the same transaction as every change.
    syncstore.MIGRATION_7,
]

SCHEMA_VERSION = len(MIGRATIONS)
BUSY_TIMEOUT_S = 10.0  # how long a write waits for another process's; ZERO2VLLM_BUSY_TIMEOUT overrides


def busy_timeout() -> float:
    try:
        return float(os.environ.get("ZERO2VLLM_BUSY_TIMEOUT") or BUSY_TIMEOUT_S)
    except ValueError:
        return BUSY_TIMEOUT_S
STATUSES = ("todo", "in_progress", "done", "skipped")


class StoreError(Exception):
    """The database cannot be used (newer schema, not a database, locked too long)."""


def explain(path: Path | str, exc: BaseException) -> str:
    """One line for a database error: which file, what is wrong, what to do."""
    text = str(exc)
    low = text.lower()
    if "locked" in low or "busy" in low:
        return (f"{path} is locked by another process for more than {busy_timeout():g} s; "
                "finish or close the other z2v (or the dashboard) and try again")
    if "readonly" in low or "read-only" in low:
        return f"{path} is read-only; make it (and its folder) writable, or pass --db ANOTHER.db"
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return (f"{path} is not a usable zero2vllm database ({text}); restore a backup "
                "(`z2v backup` makes them) or pass --db NEW.db")
    if "unable to open" in low or "disk i/o" in low or "no such" in low:
        return f"cannot open {path} ({text}); check the path and its permissions, or pass --db ANOTHER.db"
    return f"cannot use {path} as the zero2vllm database: {text}"


def _retry_locked(func):
    import time

    deadline = time.monotonic() + busy_timeout()
    while True:
        try:
            return func()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def utcnow() -> datetime:
    """Now in UTC; ZERO2VLLM_NOW (ISO 8601) fixes the clock for tests and demos, as in tracker."""
    fixed = os.environ.get("ZERO2VLLM_NOW")
    if fixed:
        return datetime.fromisoformat(fixed).astimezone(timezone.utc)
    return datetime.now(timezone.utc)


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="seconds")


@dataclass
class TimeEntry:
    id: int
    item_id: str
    day: str
    seconds: int
    started_at: str | None
    ended_at: str | None
    note: str | None
    source: str
    created_at: str
    uid: str | None = None  # stable across machines (sync); None only before the insert


@dataclass
class ItemState:
    item_id: str
    status: str
    progress_done: float | None
    progress_total: float | None
    progress_unit: str | None
    updated_at: str


@dataclass
class Timer:
    item_id: str
    started_at: datetime


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path

    # -- opening and migrating ------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str, *, migrate_to: int | None = None) -> "Store":
        path = Path(path)
        if path.is_dir():
            raise StoreError(f"{path} is a directory, not a database file; pass --db FILE.db")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {path.parent} for the database ({exc.strerror}); "
                             "set ZERO2VLLM_HOME or --db to a writable place") from None
        timeout = busy_timeout()
        try:
            conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(explain(path, exc)) from None
        conn.row_factory = sqlite3.Row
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            # switching to WAL takes a lock SQLite's busy handler does not wait for: when several
            # first commands start at once, one of them gets "locked" here; wait and retry
            _retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("PRAGMA synchronous = NORMAL")
            store = cls(conn, path)
            _retry_locked(lambda: store.migrate(migrate_to))
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(explain(path, exc)) from None
        return store

    def close(self) -> None:
        self.conn.close()

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self, target: int | None = None) -> None:
        target = SCHEMA_VERSION if target is None else target
        current = self.schema_version
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {current}, newer than this zero2vllm "
                f"({SCHEMA_VERSION}); upgrade zero2vllm"
            )
        if current >= target:
            return
        with self.transaction():
            current = self.schema_version  # another process may have migrated meanwhile
            for number in range(current + 1, target + 1):
                for statement in _statements(MIGRATIONS[number - 1]):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: BEGIN IMMEDIATE takes the write lock up front (no upgrade deadlock)."""
        if self.conn.in_transaction:  # nested: the outer transaction commits
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- plan -----------------------------------------------------------------------------------
    def get_plan(self) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM plan WHERE id = 1").fetchone()

    def set_plan(self, text: str, name: str) -> None:
        with self.transaction() as c:
            c.execute(
                """INSERT INTO plan (id, source_text, source_name, imported_at) VALUES (1, ?, ?, ?)
                   ON CONFLICT (id) DO UPDATE SET source_text = excluded.source_text,
                   source_name = excluded.source_name, imported_at = excluded.imported_at""",
                (text, name, iso(utcnow())),
            )

    def set_plan_if_none(self, text: str, name: str) -> bool:
        """Store the bundled plan on first use, once: the check and the insert are one
        transaction, so four first commands at once import it once. Not journalled (there is
        nothing for undo to go back to). True if this call stored it."""
        with self.transaction() as c:
            if self.get_plan() is not None:
                return False
            # a default, not a choice: any plan pulled from another machine wins over it
            c.execute("UPDATE sync_state SET applying = 2")
            self.set_plan(text, name)
            c.execute("UPDATE sync_state SET applying = 0")
            return True

    def set_start_date(self, day: str, summary: str | None = None) -> None:
        with self.transaction() as c:
            before = self.get_plan()
            c.execute("UPDATE plan SET start_date = ? WHERE id = 1", (day,))
            if summary and before is not None:
                self._journal("start-date", None, summary, [{"op": "plan", "row": dict(before)}])

    # -- item state -----------------------------------------------------------------------------
    def states(self) -> dict[str, ItemState]:
        rows = self.conn.execute("SELECT * FROM item_state").fetchall()
        return {r["item_id"]: ItemState(**dict(r)) for r in rows}

    def state(self, item_id: str) -> ItemState | None:
        row = self.conn.execute("SELECT * FROM item_state WHERE item_id = ?", (item_id,)).fetchone()
        return ItemState(**dict(row)) if row else None

    def set_state(
        self,
        item_id: str,
        status: str,
        progress_done: float | None = None,
        progress_total: float | None = None,
        progress_unit: str | None = None,
    ) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self.transaction() as c:
            c.execute(
                """INSERT INTO item_state VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT (item_id) DO UPDATE SET status = excluded.status,
                   progress_done = excluded.progress_done, progress_total = excluded.progress_total,
                   progress_unit = excluded.progress_unit, updated_at = excluded.updated_at""",
                (item_id, status, progress_done, progress_total, progress_unit, iso(utcnow())),
            )

    def _restore_state(self, item_id: str, row: dict | None) -> None:
        self.conn.execute("DELETE FROM item_state WHERE item_id = ?", (item_id,))
        if row:
            self.conn.execute(
                "INSERT INTO item_state VALUES (:item_id, :status, :progress_done, "
                ":progress_total, :progress_unit, :updated_at)",
                row,
            )

    # -- time entries ---------------------------------------------------------------------------
    def add_entry(
        self,
        item_id: str,
        day: str,
        seconds: int,
        *,
        note: str | None = None,
        source: str = "log",
        started_at: str | None = None,
        ended_at: str | None = None,
    ) -> int:
        with self.transaction() as c:
            cur = c.execute(
                """INSERT INTO time_entry
                   (item_id, day, seconds, started_at, ended_at, note, source, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                (item_id, day, int(seconds), started_at, ended_at, note, source, iso(utcnow())),
            )
            return int(cur.lastrowid)

    def entry(self, entry_id: int) -> TimeEntry | None:
        row = self.conn.execute("SELECT * FROM time_entry WHERE id = ?", (entry_id,)).fetchone()
        return TimeEntry(**dict(row)) if row else None

    def entries(
        self, *, item_ids: list[str] | None = None, since: str | None = None, until: str | None = None
    ) -> list[TimeEntry]:
        sql, args = "SELECT * FROM time_entry WHERE 1 = 1", []
        if since:
            sql, args = sql + " AND day >= ?", args + [since]
        if until:
            sql, args = sql + " AND day <= ?", args + [until]
        if item_ids is not None:
            sql += f" AND item_id IN ({','.join('?' * len(item_ids))})"
            args += item_ids
        rows = self.conn.execute(sql + " ORDER BY day, id", args).fetchall()
        return [TimeEntry(**dict(r)) for r in rows]

    def seconds_by_item(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT item_id, SUM(seconds) FROM time_entry GROUP BY item_id"
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def seconds_by_day(self, since: str | None = None, until: str | None = None) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT day, SUM(seconds) FROM time_entry WHERE day >= ? AND day <= ? GROUP BY day",
            (since or "0000-00-00", until or "9999-99-99"),
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def seconds_by_item_between(self, since: str, until: str) -> dict[str, int]:
        rows = self.conn.execute(
            """SELECT item_id, SUM(seconds) FROM time_entry WHERE day >= ? AND day <= ?
               GROUP BY item_id""",
            (since, until),
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def count_entries(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM time_entry").fetchone()[0]

    # -- timer ----------------------------------------------------------------------------------
    def timer(self) -> Timer | None:
        row = self.conn.execute("SELECT item_id, started_at FROM timer WHERE id = 1").fetchone()
        if not row:
            return None
        return Timer(row["item_id"], datetime.fromisoformat(row["started_at"]))

    def _set_timer(self, item_id: str | None, started_at: str | None) -> None:
        self.conn.execute("DELETE FROM timer")
        if item_id:
            self.conn.execute(
                "INSERT INTO timer (id, item_id, started_at) VALUES (1, ?, ?)", (item_id, started_at)
            )

    # -- notes ----------------------------------------------------------------------------------
    def note(self, item_id: str) -> str | None:
        row = self.conn.execute("SELECT text FROM note WHERE item_id = ?", (item_id,)).fetchone()
        return row[0] if row else None

    def notes(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT item_id, text FROM note")}

    def _set_note(self, item_id: str, text: str | None) -> None:
        if text is None:
            self.conn.execute("DELETE FROM note WHERE item_id = ?", (item_id,))
            return
        # an upsert, not delete + insert: one synced change per edit
        self.conn.execute(
            "INSERT INTO note (item_id, text, updated_at) VALUES (?, ?, ?) ON CONFLICT (item_id)"
            " DO UPDATE SET text = excluded.text, updated_at = excluded.updated_at",
            (item_id, text, iso(utcnow())),
        )

    # -- journalled changes (what the CLI and the dashboard call) --------------------------------
    def _journal(self, action: str, item_id: str | None, summary: str, undo: list[dict]) -> None:
        self.conn.execute(
            "INSERT INTO journal (at, action, item_id, summary, undo) VALUES (?, ?, ?, ?, ?)",
            (iso(utcnow()), action, item_id, summary, json.dumps(undo)),
        )

    def change_status(self, item_id: str, status: str, summary: str, **progress: Any) -> None:
        with self.transaction():
            before = self.state(item_id)
            self.set_state(item_id, status, **progress)
            undo = [{"op": "state", "item_id": item_id, "row": before.__dict__ if before else None}]
            self._journal(status, item_id, summary, undo)

    def log_time(self, item_id: str, day: str, seconds: int, summary: str, **kw: Any) -> int:
        with self.transaction():
            entry_id = self.add_entry(item_id, day, seconds, **kw)
            undo: list[dict] = [{"op": "delete_entry", "id": entry_id}]
            before = self.state(item_id)
            if before is None or before.status == "todo":
                self.set_state(item_id, "in_progress")
                undo.append({"op": "state", "item_id": item_id, "row": before.__dict__ if before else None})
            self._journal("log", item_id, summary, undo)
            return entry_id

    def start_timer(self, item_id: str, started_at: datetime, summary: str) -> Timer | None:
        """Start a timer; returns the timer it replaced (which the caller stops first)."""
        with self.transaction():
            previous = self.timer()
            self._set_timer(item_id, iso(started_at))
            undo = [{"op": "timer", "row": _timer_row(previous)}]
            before = self.state(item_id)
            if before is None or before.status == "todo":
                self.set_state(item_id, "in_progress")
                undo.append({"op": "state", "item_id": item_id, "row": before.__dict__ if before else None})
            self._journal("start", item_id, summary, undo)
            return previous

    def stop_timer(self, segments: list[tuple[str, int, datetime, datetime]], summary: str,
                   *, expect: Timer | None = None) -> tuple[Timer, list[int]] | None:
        """Stop the running timer, logging `segments` (day, seconds, start, end: one per day
        it covered); None when no timer runs, or when it is not `expect` (changed meanwhile)."""
        with self.transaction():
            timer = self.timer()
            if timer is None or (expect is not None and _timer_row(timer) != _timer_row(expect)):
                return None
            undo: list[dict] = [{"op": "timer", "row": _timer_row(timer)}]
            ids = []
            self._set_timer(None, None)
            for day, seconds, start, end in segments:
                if seconds > 0:
                    entry_id = self.add_entry(timer.item_id, day, seconds, source="timer",
                                              started_at=iso(start), ended_at=iso(end))
                    undo.append({"op": "delete_entry", "id": entry_id})
                    ids.append(entry_id)
            self._journal("stop", timer.item_id, summary, undo)
            return timer, ids

    def discard_timer(self, summary: str) -> Timer | None:
        """Drop the running timer without logging it (undo brings it back)."""
        with self.transaction():
            timer = self.timer()
            if timer is None:
                return None
            self._set_timer(None, None)
            self._journal("discard", timer.item_id, summary, [{"op": "timer", "row": _timer_row(timer)}])
            return timer

    def edit_entry(self, entry_id: int, summary: str, **fields: Any) -> TimeEntry | None:
        """Change an entry's day, seconds or note, journalled (undo puts the old row back)."""
        bad = set(fields) - {"day", "seconds", "note", "item_id"}
        if bad:
            raise ValueError(f"cannot edit entry field(s) {sorted(bad)}")
        with self.transaction() as c:
            before = self.entry(entry_id)
            if before is None:
                return None
            sets = ", ".join(f"{name} = :{name}" for name in fields)
            c.execute(f"UPDATE time_entry SET {sets} WHERE id = :id", {**fields, "id": entry_id})
            self._journal("edit-entry", before.item_id, summary, [{"op": "entry", "row": before.__dict__}])
            return before

    def delete_entry(self, entry_id: int, summary: str) -> TimeEntry | None:
        with self.transaction() as c:
            before = self.entry(entry_id)
            if before is None:
                return None
            c.execute("DELETE FROM time_entry WHERE id = ?", (entry_id,))
            self._journal("delete-entry", before.item_id, summary, [{"op": "entry", "row": before.__dict__}])
            return before

    def set_note(self, item_id: str, text: str, summary: str) -> None:
        with self.transaction():
            before = self.note(item_id)
            self._set_note(item_id, text)
            self._journal("note", item_id, summary, [{"op": "note", "item_id": item_id, "text": before}])

    def import_plan(
        self,
        text: str,
        name: str,
        entries: list[tuple[str, str, int]],
        states: list[tuple[str, str, float | None, float | None, str | None]],
        summary: str,
    ) -> None:
        """Store a plan and the progress its annotations carry, as one undoable change.
        `entries` are (item_id, day, seconds); `states` are (item_id, status, done, total, unit)."""
        with self.transaction():
            before = self.get_plan()
            undo: list[dict] = [{"op": "plan", "row": dict(before) if before else None}]
            self.set_plan(text, name)
            if before is not None and before["start_date"]:
                self.set_start_date(before["start_date"])
            for item_id, day, seconds in entries:
                entry_id = self.add_entry(item_id, day, seconds, source="import", note="from plan text")
                undo.append({"op": "delete_entry", "id": entry_id})
            for item_id, status, done, total, unit in states:
                old = self.state(item_id)
                self.set_state(item_id, status, done, total, unit)
                undo.append({"op": "state", "item_id": item_id, "row": old.__dict__ if old else None})
            self._journal("import", None, summary, undo)

    def journal_mark(self) -> int:
        return self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM journal").fetchone()[0]

    def merge_journal_since(self, mark: int) -> None:
        """Make the changes journalled after MARK one change (one undo reverses them all):
        e.g. `done` on an item whose timer runs is the stop and the status together."""
        with self.transaction() as c:
            rows = c.execute("SELECT * FROM journal WHERE id > ? ORDER BY id", (mark,)).fetchall()
            if len(rows) < 2:
                return
            undo = [op for r in rows for op in json.loads(r["undo"])]
            last = rows[-1]
            summary = "; ".join([last["summary"]] + [r["summary"] for r in rows[:-1]])
            c.execute("UPDATE journal SET undo = ?, summary = ? WHERE id = ?", (json.dumps(undo), summary, last["id"]))
            c.execute("DELETE FROM journal WHERE id > ? AND id < ?", (mark, last["id"]))

    def last_change(self) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT * FROM journal WHERE undone = 0 ORDER BY id DESC LIMIT 1"
        ).fetchone()

    def undo_last(self) -> sqlite3.Row | None:
        with self.transaction():
            row = self.last_change()
            if row is None:
                return None
            for op in reversed(json.loads(row["undo"])):
                kind = op["op"]
                if kind == "delete_entry":
                    self.conn.execute("DELETE FROM time_entry WHERE id = ?", (op["id"],))
                elif kind == "entry":  # an edited or deleted entry: its old row, same id and uid
                    old = dict(op["row"])
                    if old.get("uid") is None:  # journalled before uids: keep the entry's uid, if here
                        here = self.conn.execute("SELECT uid FROM time_entry WHERE id = ?", (old["id"],)).fetchone()
                        old["uid"] = here[0] if here else None
                    self.conn.execute("DELETE FROM time_entry WHERE id = ? OR uid = ?", (old["id"], old["uid"]))
                    self.conn.execute(
                        "INSERT INTO time_entry (id, item_id, day, seconds, started_at, ended_at, note, "
                        "source, created_at, uid) VALUES (:id, :item_id, :day, :seconds, :started_at, "
                        ":ended_at, :note, :source, :created_at, :uid)", old)
                elif kind == "state":
                    self._restore_state(op["item_id"], op["row"])
                elif kind == "timer":
                    r = op["row"]
                    self._set_timer(r["item_id"] if r else None, r["started_at"] if r else None)
                elif kind == "note":
                    self._set_note(op["item_id"], op["text"])
                elif kind == "plan":
                    self.conn.execute("DELETE FROM plan")
                    if op["row"]:
                        self.conn.execute(
                            "INSERT INTO plan VALUES (:id, :source_text, :source_name, "
                            ":imported_at, :start_date)", op["row"],
                        )
                else:  # pragma: no cover - journal written by a newer version
                    raise StoreError(f"cannot undo {kind!r}")
            self.conn.execute("UPDATE journal SET undone = 1 WHERE id = ?", (row["id"],))
            return row

    def journal(self, limit: int = 50) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM journal ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()

    # -- lab runs -------------------------------------------------------------------------------
    def add_lab_run(
        self,
        lab: str,
        passed: bool,
        *,
        kind: str = "check",
        duration_s: float | None = None,
        code_path: str | None = None,
        files_hash: str | None = None,
        criteria: list | None = None,
        metrics: dict | None = None,
        artifacts: list | None = None,
        refused: str | None = None,
        isolation: str | None = None,
    ) -> int:
        with self.transaction() as c:
            cur = c.execute(
                """INSERT INTO lab_run (lab, kind, at, passed, duration_s, code_path, files_hash,
                   criteria, metrics, artifacts, refused, isolation)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    lab, kind, iso(utcnow()), int(bool(passed) and not refused), duration_s,
                    code_path, files_hash, json.dumps(criteria or []), json.dumps(metrics or {}),
                    json.dumps(artifacts or []), refused, isolation,
                ),
            )
            return int(cur.lastrowid)

    def lab_runs(self, lab: str | None = None, kind: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM lab_run WHERE 1 = 1", []
        if lab:
            sql, args = sql + " AND lab = ?", args + [lab]
        if kind:
            sql, args = sql + " AND kind = ?", args + [kind]
        rows = self.conn.execute(sql + " ORDER BY id", args).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["passed"] = bool(d["passed"])
            for key in ("criteria", "metrics", "artifacts"):
                d[key] = json.loads(d[key])
            out.append(d)
        return out

    # -- cards and reviews (zero2vllm.tracker.review: FSRS concept review) ------------------------------
    CARD_FIELDS = ("question", "answer", "week", "suspended")

    def cards(self, *, include_suspended: bool = True) -> list[dict]:
        sql = "SELECT * FROM card" + ("" if include_suspended else " WHERE suspended = 0")
        return [dict(r) for r in self.conn.execute(sql + " ORDER BY due, id")]

    def card(self, card_id: str) -> dict | None:
        row = self.conn.execute("SELECT * FROM card WHERE id = ?", (card_id,)).fetchone()
        return dict(row) if row else None

    def add_cards(self, rows: list[dict]) -> None:
        """Insert new cards (dicts with every column but `suspended`), all or none."""
        with self.transaction() as c:
            c.executemany(
                """INSERT INTO card (id, source, week, question, answer, fsrs, due, created_at)
                   VALUES (:id, :source, :week, :question, :answer, :fsrs, :due, :created_at)""",
                rows,
            )

    def update_card(self, card_id: str, **fields: Any) -> None:
        """Change a card's text, week or suspension (its schedule changes only by a review)."""
        bad = set(fields) - set(self.CARD_FIELDS)
        if bad:
            raise ValueError(f"cannot update card field(s) {sorted(bad)}")
        if not fields:
            return
        sets = ", ".join(f"{name} = :{name}" for name in fields)
        with self.transaction() as c:
            c.execute(f"UPDATE card SET {sets} WHERE id = :id", {**fields, "id": card_id})

    def delete_card(self, card_id: str) -> int:
        """Delete a card and its reviews; returns how many reviews went with it."""
        with self.transaction() as c:
            n = c.execute("DELETE FROM review WHERE card_id = ?", (card_id,)).rowcount
            c.execute("DELETE FROM card WHERE id = ?", (card_id,))
            return n

    def record_review(self, card_id: str, at: str, rating: int, fsrs_log: str, fsrs: str, due: str) -> int:
        """One review: the log row and the card's new FSRS state, in one transaction."""
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO review (card_id, at, rating, fsrs_log) VALUES (?, ?, ?, ?)",
                (card_id, at, int(rating), fsrs_log),
            )
            c.execute("UPDATE card SET fsrs = ?, due = ? WHERE id = ?", (fsrs, due, card_id))
            return int(cur.lastrowid)

    def reviews(self, card_id: str | None = None, since: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM review WHERE 1 = 1", []
        if card_id:
            sql, args = sql + " AND card_id = ?", args + [card_id]
        if since:
            sql, args = sql + " AND at >= ?", args + [since]
        return [dict(r) for r in self.conn.execute(sql + " ORDER BY at, id", args)]

    # -- export/import/backup (zero2vllm.commands.data) -----------------------------------------
    def table_names(self) -> list[str]:
        """The tables of the learner's data; sync bookkeeping (one machine's marks) is left out."""
        rows = self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
        return [r[0] for r in rows if r[0] not in syncstore.SYNC_TABLES]

    def table_columns(self, table: str) -> list[str]:
        return [r[1] for r in self.conn.execute(f'PRAGMA table_info("{table}")')]

    def row_counts(self) -> dict[str, int]:
        return {t: self.conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in self.table_names()}

    def dump_tables(self) -> dict:
        """Every row of every table, read in one transaction (a consistent snapshot)."""
        tables = {}
        self.conn.execute("BEGIN")
        try:
            version = self.schema_version
            for t in self.table_names():
                cols = self.table_columns(t)
                rows = self.conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall()
                tables[t] = {"columns": cols, "rows": [list(r) for r in rows]}
        finally:
            self.conn.execute("COMMIT")
        return {"schema_version": version, "tables": tables}

    def load_tables(self, dump: dict) -> dict[str, int]:
        """Restore `dump_tables()` output into this store, which must be empty; all or nothing.
        A dump from an older schema loads too (its columns are a subset); a newer one does not."""
        version = int(dump.get("schema_version", 0))
        if version > self.schema_version:
            raise StoreError(
                f"the export has schema version {version}, newer than this zero2vllm "
                f"({self.schema_version}); upgrade zero2vllm"
            )
        loaded = {}
        with self.transaction() as c:
            if any(self.row_counts().values()):
                raise StoreError(f"{self.path} is not empty")
            known = set(self.table_names())
            for table, data in dump["tables"].items():
                if table not in known:
                    raise StoreError(f"the export has a table {table!r} this zero2vllm does not know")
                cols = list(data["columns"])
                missing = set(cols) - set(self.table_columns(table))
                if missing:
                    raise StoreError(f"the export's table {table!r} has unknown columns {sorted(missing)}")
                names = ", ".join(f'"{col}"' for col in cols)
                marks = ", ".join("?" * len(cols))
                c.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', data["rows"])
                loaded[table] = len(data["rows"])
        return loaded

    def backup_to(self, dest: Path | str) -> None:
        """Copy the database to `dest` with SQLite's online backup API: a consistent snapshot
        even while other processes write (they are not blocked: WAL). `dest` must not exist."""
        dest = Path(dest)
        target = sqlite3.connect(dest)
        try:
            self.conn.backup(target)  # pages=-1: one step, one read transaction
            target.execute("PRAGMA journal_mode = DELETE")  # a single self-contained file
        finally:
            target.close()

    @staticmethod
    def check_file(path: Path | str) -> tuple[str, dict[str, int]]:
        """Open a database file read-only (a backup): its integrity check result ("ok") and the
        row count of each table. Changes nothing in the file."""
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
            tables = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
            return ok, {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
        finally:
            conn.close()


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration; a trigger's body holds semicolons of its own."""
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
    if pending.strip(" \n;"):
        yield pending


def _timer_row(timer: Timer | None) -> dict | None:
    if timer is None:
        return None
    return {"item_id": timer.item_id, "started_at": iso(timer.started_at)}
