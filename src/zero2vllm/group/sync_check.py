"""Strict validation of a sync push (docs/group.md, "The sync protocol"): every change is
checked against the synced entities' columns and the local store's constraints, so that what
the server accepts applies on every machine; the first bad change is named in a 400.
"""

from __future__ import annotations

import json
import math
import re
from datetime import date

from zero2vllm.tracker.store import STATUSES
from zero2vllm.tracker.syncstore import ENTITIES

MAX_CHANGES = 5000
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_STR_CHARS = 1024 * 1024  # one text value (a plan's text is the longest, ~100 kB)
MAX_KEY_CHARS = 200
MAX_DEPTH = 10  # nesting inside a lab run's criteria/metrics/artifacts
MAX_VERSION = 2 ** 62
HEX32 = re.compile(r"[0-9a-f]{32}")
CHANGE_FIELDS = {"id", "entity", "key", "version", "device", "deleted", "row"}
# columns the local store declares NOT NULL may not be null (the row must apply on every machine)
NULLABLE = {"start_date", "progress_done", "progress_total", "progress_unit", "started_at",
            "ended_at", "note", "duration_s", "code_path", "files_hash", "refused", "isolation",
            "week", "answer"}


class SyncError(Exception):
    """A refused push or pull: the HTTP status and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


# -- validation --------------------------------------------------------------------------------
def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_body(raw: bytes) -> dict:
    if len(raw) > MAX_BODY_BYTES:
        raise SyncError(413, f"the push is over {MAX_BODY_BYTES >> 20} MiB: send fewer changes at once")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise SyncError(400, "the body is not UTF-8") from None
    except RecursionError:
        raise SyncError(400, "the body is nested too deeply") from None
    except ValueError as exc:
        raise SyncError(400, f"the body is not JSON ({str(exc)[:120]})") from None
    if not isinstance(body, dict) or set(body) != {"device", "changes"}:
        raise SyncError(400, 'the body must be {"device": "<32 hex>", "changes": [...]}')
    if not isinstance(body["device"], str) or not HEX32.fullmatch(body["device"]):
        raise SyncError(400, "device must be 32 lowercase hex characters")
    if not isinstance(body["changes"], list):
        raise SyncError(400, "changes must be a list")
    if len(body["changes"]) > MAX_CHANGES:
        raise SyncError(413, f"{len(body['changes'])} changes in one push; at most {MAX_CHANGES}")
    return body


def _check_str(value, what: str) -> None:
    if len(value) > MAX_STR_CHARS:
        raise ValueError(f"{what} is over {MAX_STR_CHARS} characters")
    if "\x00" in value:
        raise ValueError(f"{what} holds a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode (a lone surrogate)") from None


def _check_json(value, what: str, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"{what} is nested deeper than {MAX_DEPTH}")
    if isinstance(value, str):
        _check_str(value, what)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{what} is not a finite number")
    elif isinstance(value, list):
        for item in value:
            _check_json(item, what, depth + 1)
    elif isinstance(value, dict):
        for k, item in value.items():
            _check_str(k, what)
            _check_json(item, what, depth + 1)


_TYPES = {"text": str, "bool": bool, "int": int, "real": (int, float), "list": list, "dict": dict}


def _check_column(entity: str, name: str, kind: str, value) -> None:
    what = f"row.{name}"
    if value is None:
        if name not in NULLABLE:
            raise ValueError(f"{what} may not be null")
        return
    if not isinstance(value, _TYPES[kind]) or (isinstance(value, bool) and kind in ("int", "real")):
        raise ValueError(f"{what} must be {'a ' if kind != 'int' else 'an '}{kind}, not {type(value).__name__}")
    _check_json(value, what)
    if kind in ("int", "real") and isinstance(value, int) and abs(value) >= 2 ** 63:  # SQLite's range
        raise ValueError(f"{what} is out of range")
    if entity == "time_entry" and name == "seconds" and not 0 < value < 2 ** 31:
        raise ValueError("row.seconds must be between 1 and 2**31-1")
    if entity == "time_entry" and name == "day":
        try:
            if len(value) != 10:
                raise ValueError
            date.fromisoformat(value)
        except ValueError:
            raise ValueError("row.day must be a date YYYY-MM-DD") from None
    if (entity, name) == ("item_state", "status") and value not in STATUSES:
        raise ValueError(f"row.status must be one of {', '.join(STATUSES)}")
    if (entity, name) == ("review", "rating") and not 1 <= value <= 4:
        raise ValueError("row.rating must be 1 to 4")
    if (entity, name) == ("card", "source") and value not in ("plan", "user"):
        raise ValueError("row.source must be plan or user")


def check_change(ch) -> None:
    """Raise ValueError saying what is wrong with one change."""
    if not isinstance(ch, dict):
        raise ValueError("a change must be an object")
    if set(ch) != CHANGE_FIELDS:
        missing, extra = CHANGE_FIELDS - set(ch), set(ch) - CHANGE_FIELDS
        raise ValueError(f"fields must be {', '.join(sorted(CHANGE_FIELDS))}"
                         + (f"; missing {', '.join(sorted(missing))}" if missing else "")
                         + (f"; unknown {', '.join(sorted(map(str, extra))[:5])}" if extra else ""))
    for field in ("id", "device"):
        if not isinstance(ch[field], str) or not HEX32.fullmatch(ch[field]):
            raise ValueError(f"{field} must be 32 lowercase hex characters")
    entity = ch["entity"]
    if not isinstance(entity, str) or entity not in ENTITIES:
        raise ValueError(f"entity must be one of {', '.join(ENTITIES)}")
    table, keycol, columns = ENTITIES[entity]
    key = ch["key"]
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS:
        raise ValueError(f"key must be a string of 1 to {MAX_KEY_CHARS} characters")
    _check_str(key, "key")
    if keycol is None and key != "1":
        raise ValueError('the plan\'s key is "1"')
    if keycol == "uid" and not HEX32.fullmatch(key):
        raise ValueError(f"a {entity}'s key is its uid, 32 lowercase hex characters")
    version = ch["version"]
    if not isinstance(version, int) or isinstance(version, bool) or not 0 < version <= MAX_VERSION:
        raise ValueError("version must be an integer from 1 to 2**62")
    if not isinstance(ch["deleted"], bool):
        raise ValueError("deleted must be true or false")
    row = ch["row"]
    if ch["deleted"]:
        if row is not None:
            raise ValueError("a deletion's row must be null")
        return
    if not isinstance(row, dict):
        raise ValueError("row must be an object (or null with deleted: true)")
    names = [name for name, _ in columns]
    if set(row) != set(names):
        missing, extra = set(names) - set(row), set(row) - set(names)
        raise ValueError(f"a {entity} row has the columns {', '.join(names)}"
                         + (f"; missing {', '.join(sorted(missing))}" if missing else "")
                         + (f"; unknown {', '.join(sorted(map(str, extra))[:5])}" if extra else ""))
    for name, kind in columns:
        _check_column(entity, name, kind, row[name])
    if keycol and row[keycol] != key:
        raise ValueError(f"row.{keycol} must equal the key")


def validate(changes: list) -> tuple[list[dict], int]:
    """The distinct changes of a push, and how many were repeated inside it; 400 naming the
    first bad one."""
    out, seen, repeated = [], {}, 0
    for i, ch in enumerate(changes):
        try:
            check_change(ch)
        except ValueError as exc:
            name = ch.get("id") if isinstance(ch, dict) and isinstance(ch.get("id"), str) else None
            label = f"change {i}" + (f" (id {name[:40]!r})" if name else "")
            raise SyncError(400, f"{label}: {exc}") from None
        if ch["id"] in seen:
            if seen[ch["id"]] != ch:
                raise SyncError(400, f"change {i} (id {ch['id']!r}): the same id twice with different contents")
            repeated += 1
            continue
        seen[ch["id"]] = ch
        out.append(ch)
    return out, repeated
