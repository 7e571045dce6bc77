"""What `z2v contrib` remembers in the store: the learner's vLLM clone, its base ref, the Python
that runs its tests, the PR URL, and locked predictions (a salted hash until revealed; the rule
is contrib/predictions.py, applied by the caller). The contribution labs' checks never read
this: the parent passes it in (`tracker/evidence.check_inputs`)."""

from __future__ import annotations

from zero2vllm.tracker.store import Store, iso, utcnow

KEYS = ("clone", "base", "python", "pr_url")


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


# -- locked predictions -------------------------------------------------------------------------
def lock_prediction(store: Store, lab: str, name: str, salt: str, digest: str) -> None:
    """Store a prediction as its salted hash only, so it cannot be read (or quietly changed)
    before the reveal. Locking twice is refused: the point is committing before you look."""
    if locked(store, lab, name) is not None:
        raise ValueError(f"a prediction {name!r} for {lab} is already locked")
    with store.transaction() as c:
        c.execute("INSERT INTO prediction (lab, name, digest, salt, locked_at) VALUES (?, ?, ?, ?, ?)",
                  (lab, name, digest, salt, iso(utcnow())))


def locked(store: Store, lab: str, name: str | None = None):
    """One prediction (a dict) or, without NAME, all of LAB's, by name."""
    rows = [dict(r) for r in store.conn.execute(
        "SELECT * FROM prediction WHERE lab = ? ORDER BY id", (lab,))]
    if name is None:
        return {r["name"]: r for r in rows}
    return next((r for r in rows if r["name"] == name), None)


def mark_revealed(store: Store, lab: str, name: str, answer: str) -> bool:
    """Record ANSWER as LAB's revealed prediction NAME (the caller has checked it against the
    hash); True when this changed the store."""
    row = locked(store, lab, name)
    if row is None or row["revealed_at"] is not None:
        return False
    with store.transaction() as c:
        c.execute("UPDATE prediction SET revealed_at = ?, answer = ? WHERE id = ?",
                  (iso(utcnow()), answer, row["id"]))
    return True
