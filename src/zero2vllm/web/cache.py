"""Rendered pages kept until the database changes: the overview is read far more often than
the data behind it changes, and re-rendering it for every poll is what would make it slow.

A change is detected with SQLite's `PRAGMA data_version` on a connection of our own that
never writes: its value changes whenever any other connection (a dashboard request, the CLI
in another terminal) commits. So everything the CLI changes shows up on the next reload.
When a page is stale, one request renders it and the others wait for that render instead of
all rendering the same page at once.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Callable


class PageCache:
    def __init__(self, db_path: Path):
        self.db_path = Path(db_path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pages: dict[str, tuple[tuple, object]] = {}
        self._render_locks: dict[str, threading.Lock] = {}
        self.renders = 0  # how many times a page was rendered (tests and benchmarks read it)

    def version(self) -> int:
        """The database's change counter as this process sees it (-1: no database yet)."""
        with self._lock:
            if self._conn is None:
                if not self.db_path.exists():
                    return -1  # the render creates it; nothing is cached until then
                self._conn = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
            return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def _fresh(self, name: str, key: str, version: int):
        entry = self._pages.get(name)
        if entry is not None and version != -1 and entry[0] == (version, key):
            return entry[1]
        return None

    def peek(self, name: str, key: str):
        """The cached value if it is still fresh, else None (never renders)."""
        return self._fresh(name, key, self.version())

    def page(self, name: str, key: str, render: Callable[[], object]):
        """The cached value of page NAME for KEY (e.g. the current minute), rendered by RENDER
        when the database changed since. RENDER reads the data after the version was taken,
        so a commit racing it bumps the counter and the next call renders again."""
        value = self._fresh(name, key, self.version())
        if value is not None:
            return value
        with self._lock:
            lock = self._render_locks.setdefault(name, threading.Lock())
        with lock:  # one render at a time per page; waiters reuse its result
            version = self.version()
            value = self._fresh(name, key, version)
            if value is None:
                value = render()
                self.renders += 1
                if version != -1:
                    self._pages[name] = ((version, key), value)
            return value

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
