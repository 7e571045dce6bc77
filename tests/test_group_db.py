"""The group database's migrations run on a real PostgreSQL, once, from several processes."""

from __future__ import annotations

import concurrent.futures

import pytest

pytest.importorskip("psycopg")

from zero2vllm.group import db  # noqa: E402


def _migrate(url: str) -> int:
    with db.connect(url) as conn:
        return db.migrate(conn)


def test_migrations_apply_once_even_when_raced(pg_url):
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(_migrate, [pg_url] * 4))
    assert versions == [len(db.migrations())] * 4
    with db.connect(pg_url) as conn:
        rows = conn.execute("SELECT version FROM schema_migration ORDER BY version").fetchall()
        assert [r["version"] for r in rows] == list(range(1, len(db.migrations()) + 1))
        assert conn.execute("SELECT count(*) AS n FROM account").fetchone()["n"] == 0


def test_a_bad_url_is_one_line():
    with pytest.raises(db.GroupDBError, match="postgresql://"):
        db.database_url("sqlite:///x.db")
    with pytest.raises(db.GroupDBError, match="cannot reach"):
        db.connect("postgresql://nobody@127.0.0.1:1/none")
