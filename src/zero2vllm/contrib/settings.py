"""What `z2v contrib` remembers in the store: the learner's vLLM clone, its base ref, the Python
that runs its tests, the PR URL, and locked predictions (hashed until revealed).

The contribution labs' checks run in a child process (zero2vllm.labs.runner); they open the
store the same way the CLI does (ZERO2VLLM_DB, else $ZERO2VLLM_HOME/zero2vllm.db).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from zero2vllm.tracker.store import Store, iso, utcnow

KEYS = ("clone", "base", "python", "pr_url")


def open_store(db: Path | None = None) -> Store:
    if db is None:
        env = os.environ.get("ZERO2VLLM_DB")
        if env:
            db = Path(env)
        else:
            from zero2vllm.paths import db_path

            db = db_path()
    return Store.open(db)


def get_all(store: Store) -> dict[str, str]:
    rows = store.conn.execute("SELECT key, value FROM contrib_setting ORDER BY key")
    return {r["key"]: r["value"] for r in rows}


def get(store: Store, key: str) -> str | None:
    row = store.conn.execute("SELECT value FROM contrib_setting WHERE key = ?", (key,)).fetchone()
    return row["value"] if row else None


def put(store: Store, **values: str | None) -> None:
    """Set (or, with None, forget) settings, all in one transaction."""
    with store.transaction() as c:
        for key, value in values.items():
            if key not in KEYS:
                raise ValueError(f"unknown contrib setting {key!r}")
            if value is None:
                c.execute("DELETE FROM contrib_setting WHERE key = ?", (key,))
            else:
                c.execute(
                    "INSERT INTO contrib_setting (key, value, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                    "updated_at = excluded.updated_at", (key, str(value), iso(utcnow())))


def stored(key: str) -> str | None:
    """One setting read from the default store, or None when there is no store or no value."""
    try:
        store = open_store()
    except Exception:  # no data dir, a broken file: the caller says what to run instead
        return None
    try:
        return get(store, key)
    finally:
        store.close()


# -- locked predictions -------------------------------------------------------------------------
def normalise(answer: str) -> str:
    """Predictions compare without case or surrounding/repeated spaces."""
    return " ".join(answer.split()).lower()


def _digest(salt: str, answer: str) -> str:
    return hashlib.sha256((salt + "\0" + normalise(answer)).encode()).hexdigest()


def lock_prediction(store: Store, lab: str, name: str, answer: str) -> str:
    """Store only a salted hash of ANSWER, so it cannot be read (or quietly changed) before the
    reveal. Locking twice is refused: the point is committing before you look."""
    if locked(store, lab, name) is not None:
        raise ValueError(f"a prediction {name!r} for {lab} is already locked")
    salt = secrets.token_hex(8)
    digest = _digest(salt, answer)
    with store.transaction() as c:
        c.execute("INSERT INTO prediction (lab, name, digest, salt, locked_at) VALUES (?, ?, ?, ?, ?)",
                  (lab, name, digest, salt, iso(utcnow())))
    return digest


def locked(store: Store, lab: str, name: str | None = None):
    """One prediction (a dict) or, without NAME, all of LAB's, by name."""
    rows = [dict(r) for r in store.conn.execute(
        "SELECT * FROM prediction WHERE lab = ? ORDER BY id", (lab,))]
    if name is None:
        return {r["name"]: r for r in rows}
    return next((r for r in rows if r["name"] == name), None)


def matches(row: dict, answer: str) -> bool:
    """Whether ANSWER is what the locked prediction ROW hashed."""
    return _digest(row["salt"], answer) == row["digest"]


def reveal(store: Store, lab: str, name: str, answer: str) -> bool:
    """Record ANSWER as the revealed prediction if it matches the hash; True when it does."""
    row = locked(store, lab, name)
    if row is None:
        raise ValueError(f"no prediction {name!r} locked for {lab}")
    ok = _digest(row["salt"], answer) == row["digest"]
    if ok and row["revealed_at"] is None:
        with store.transaction() as c:
            c.execute("UPDATE prediction SET revealed_at = ?, answer = ? WHERE id = ?",
                      (iso(utcnow()), answer, row["id"]))
    return ok
