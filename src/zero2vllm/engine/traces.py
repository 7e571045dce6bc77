"""Saved engine traces: every `z2v engine trace` run (and every run from the dashboard) is kept as
one JSON file under data_dir()/engine-traces/, so the dashboard's Engine trace page can draw it.

This module only reads and writes those files (stdlib only, no torch): the dashboard lists and
draws traces without loading the engine. Running a trace is `zero2vllm.engine.trace.run_trace`.

A saved file is one record:
    {"version": 1, "name": "trace-20261128-063012-123456", "created": ISO time, "source": "cli",
     "seconds": wall time, "settings": {model, model_path, prompts, max_tokens, block_size,
     num_kv_blocks, max_num_batched_tokens, max_num_seqs, prefix_caching, repeat},
     "block_size", "num_blocks", "budget_tokens", "rounds": [one trace() dict per --repeat round]}
"""

from __future__ import annotations

import functools
import json
import os
import re
from datetime import datetime
from pathlib import Path

DIR_NAME = "engine-traces"
KEEP = 20  # older files are deleted: the folder must not grow forever
VERSION = 1
NAME_RE = re.compile(r"^trace-\d{8}-\d{6}-\d{6}(-\d+)?$")

# The CLI's defaults; the dashboard's form starts from these too.
DEFAULTS = {"max_tokens": 6, "block_size": 16, "num_kv_blocks": 32, "max_num_batched_tokens": 64,
            "max_num_seqs": 8, "prefix_caching": True, "repeat": 1}
EXAMPLE_COMMAND = ('z2v engine trace "The capital of France is" "Once upon a time, in a small village by the sea," '
                   '--max-tokens 8 --block-size 4 --num-kv-blocks 9 --max-num-batched-tokens 16 --repeat 2')


class TraceFileError(Exception):
    """A saved trace that does not exist or cannot be read; the message says which and why."""


def traces_dir(root: Path | str | None = None) -> Path:
    """data_dir()/engine-traces (or ROOT/engine-traces); not created here."""
    if root is None:
        from zero2vllm.paths import data_dir

        root = data_dir()
    return Path(root) / DIR_NAME


def save(record: dict, root: Path | str | None = None, keep: int = KEEP) -> Path:
    """Write RECORD as a new timestamped file (atomically), delete all but the newest KEEP; the path."""
    folder = traces_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    stem = datetime.now().strftime("trace-%Y%m%d-%H%M%S-%f")
    name, n = stem, 1
    while (folder / f"{name}.json").exists():  # two runs in the same microsecond
        n += 1
        name = f"{stem}-{n}"
    record = {**record, "name": name}
    path = folder / f"{name}.json"
    tmp = folder / f".{name}.json.partial"
    tmp.write_text(json.dumps(record, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, path)
    prune(root, keep)
    return path


def _saved_paths(folder: Path) -> list[Path]:
    """Saved trace files, newest first (the names sort by time)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("trace-*.json") if NAME_RE.match(p.stem)), key=_sort_key, reverse=True)


def _sort_key(path: Path):
    """trace-DATE-TIME-MICROSECONDS, then the -N of a second file in the same microsecond."""
    stem = path.stem
    return stem[:28], int(stem[29:] or 1)


def prune(root: Path | str | None = None, keep: int = KEEP) -> list[Path]:
    """Delete all but the newest KEEP saved traces; returns what was deleted."""
    old = _saved_paths(traces_dir(root))[keep:]
    for path in old:
        path.unlink(missing_ok=True)
    return old


def list_saved(root: Path | str | None = None) -> list[dict]:
    """One summary per saved trace, newest first; an unreadable file is listed with its error."""
    out = []
    for path in _saved_paths(traces_dir(root)):
        try:
            st = path.stat()
            out.append(_summary_of(str(path), st.st_mtime_ns, st.st_size))
        except OSError:  # deleted meanwhile (another process pruned it)
            continue
    return out


@functools.lru_cache(maxsize=64)
def _summary_of(path: str, _mtime_ns: int, _size: int) -> dict:
    """Parsing a big trace for the list costs milliseconds: cached by (path, mtime, size)."""
    name = Path(path).stem
    try:
        return {"name": name, "ok": True, **summarize(_read(Path(path)))}
    except TraceFileError as exc:
        return {"name": name, "ok": False, "error": str(exc)}


def summarize(record: dict) -> dict:
    """The numbers the list of traces shows."""
    try:
        s = record["settings"]
        rounds = record["rounds"]
        return {"created": record.get("created", ""), "source": record.get("source", ""),
                "prompts": len(s.get("prompts", [])), "repeat": s.get("repeat", 1),
                "steps": sum(len(r["steps"]) for r in rounds),
                "preemptions": sum(req["preemptions"] for r in rounds for req in r["requests"]),
                "prefix_hit_tokens": sum(st["prefix_hit_tokens"] for r in rounds for st in r["steps"]),
                "block_size": record["block_size"], "num_blocks": record["num_blocks"],
                "budget_tokens": record["budget_tokens"], "prefix_caching": s.get("prefix_caching", True),
                "model": s.get("model", "")}
    except (KeyError, TypeError, AttributeError) as exc:
        raise TraceFileError(f"not a zero2vllm engine trace (missing {exc})") from None


def _read(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TraceFileError(f"{path.name}: no such saved trace (only the newest {KEEP} are kept)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TraceFileError(f"{path.name}: cannot be read ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("rounds"), list):
        raise TraceFileError(f"{path.name}: not a zero2vllm engine trace")
    return record


def load(name: str, root: Path | str | None = None) -> dict:
    """The saved trace NAME (the file name without .json); TraceFileError if missing or unreadable."""
    if not NAME_RE.match(name or ""):
        raise TraceFileError(f"{name!r} is not a saved trace name (like trace-20261128-063012-123456)")
    path = traces_dir(root) / f"{name}.json"
    try:
        st = path.stat()
    except OSError:
        raise TraceFileError(f"{name}: no such saved trace (only the newest {KEEP} are kept)") from None
    return _load_cached(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, _mtime_ns: int, _size: int) -> dict:
    record = _read(Path(path))
    summarize(record)  # refuses a file that lacks the basics
    return record
