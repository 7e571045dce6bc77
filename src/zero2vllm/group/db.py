"""The group server's PostgreSQL database: connections (psycopg 3) and numbered migrations.

Migrations are the files `migrations/NNNN_name.sql`, applied in order inside one transaction
each and recorded in `schema_migration`; never edit one that has shipped, add the next number.
"""

from __future__ import annotations

import os
import re
from importlib import resources

import psycopg
from psycopg.rows import dict_row

ENV_URL = "ZERO2VLLM_GROUP_DB"


class GroupDBError(Exception):
    """A one-line, user-facing database problem (bad URL, server down, newer schema)."""


def database_url(url: str | None = None) -> str:
    url = url or os.environ.get(ENV_URL)
    if not url:
        raise GroupDBError(f"no database: pass --db postgresql://... or set {ENV_URL}")
    if not url.startswith(("postgresql://", "postgres://")):
        raise GroupDBError(f"--db must be a postgresql:// URL, got {url.split(':', 1)[0]!r}")
    return url


def connect(url: str | None = None, **kwargs) -> psycopg.Connection:
    try:
        return psycopg.connect(database_url(url), row_factory=dict_row, connect_timeout=10, **kwargs)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GroupDBError(f"cannot reach the group database: {first}") from None


def migrations() -> list[tuple[int, str, str]]:
    """(number, name, sql) for every bundled migration, in order; numbers must run 1, 2, 3..."""
    found = []
    for entry in resources.files("zero2vllm.group").joinpath("migrations").iterdir():
        m = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort()
    if [n for n, _, _ in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"group migrations are not numbered 1..N: {[n for n, _, _ in found]}")
    return found


def migrate(conn: psycopg.Connection) -> int:
    """Apply the migrations this database lacks; returns the schema version. Safe to run from
    several processes at once (an advisory lock serialises them)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7337001)")
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migration ("
                     " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                     " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        have = {r["version"] for r in conn.execute("SELECT version FROM schema_migration")}
    known = migrations()
    if have and max(have) > len(known):
        raise GroupDBError(f"the group database is at schema {max(have)}, newer than this z2v "
                           f"({len(known)}): upgrade zero2vllm")
    for number, name, sql in known:
        if number in have:
            continue
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(7337001)")
            if conn.execute("SELECT 1 FROM schema_migration WHERE version = %s", (number,)).fetchone():
                continue
            conn.execute(sql)
            conn.execute("INSERT INTO schema_migration (version, name) VALUES (%s, %s)", (number, name))
    return len(known)
