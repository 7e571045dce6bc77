"""`z2v export --all`, `z2v import --all FILE` and `z2v backup [DEST]`: your data, whole.

The export is one JSON file with every row of every table of the store (the plan text, item
states, time entries, the timer, notes, the undo journal, lab runs and their evidence, cards and
reviews), read in one transaction. Import restores it into an empty store row for row, ids
included, so undo, evidence links and review histories survive the trip. The backup is a SQLite
file copied with SQLite's online backup API: a consistent snapshot even while a timer or another
terminal writes (WAL lets them go on).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from zero2vllm.commands._app import AppContext, Z2VError, pass_app

EXPORT_FORMAT = "zero2vllm-export"
EXPORT_VERSION = 1


def _counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {t}" for t, n in counts.items() if n) or "no rows"


def _dumps(doc: dict) -> str:
    """JSON with one line per row: readable and diffable, and much smaller than indent=2."""
    def one(value) -> str:
        return json.dumps(value, ensure_ascii=False)

    out = ["{"]
    out += [f" {one(k)}: {one(v)}," for k, v in doc.items() if k != "tables"]
    out.append(' "tables": {')
    tables = list(doc["tables"].items())
    for i, (name, data) in enumerate(tables):
        out.append(f'  {one(name)}: {{"columns": {one(data["columns"])}, "rows": [')
        rows = data["rows"]
        out += [f"   {one(row)}{',' if j < len(rows) - 1 else ''}" for j, row in enumerate(rows)]
        out.append("  ]}" + ("," if i < len(tables) - 1 else ""))
    out += [" }", "}"]
    return "\n".join(out) + "\n"


@click.command("export")
@click.option("--all", "everything", is_flag=True, help="Everything the store holds (required).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default=None,
              help="File to write ('-': stdout; default: ./zero2vllm-export-DATE.json).")
@pass_app
def export_cmd(app: AppContext, everything: bool, output: Path | None) -> None:
    """Write everything the store holds to one JSON file (`z2v import --all` restores it)."""
    from zero2vllm import __version__
    from zero2vllm.tracker.store import iso, utcnow

    if not everything:
        raise Z2VError("say what to export: --all (everything); the plan text alone is `z2v plan export`")
    dump = app.store.dump_tables()
    doc = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "zero2vllm": __version__,
           "exported_at": iso(utcnow()), "source": str(app.db_path), **dump}
    text = _dumps(doc)
    if output is not None and str(output) == "-":
        click.echo(text, nl=False)
        return
    path = output or Path(f"zero2vllm-export-{time.strftime('%Y%m%d-%H%M%S')}.json")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise Z2VError(f"cannot write {path}: {exc.strerror}") from None
    counts = {t: len(d["rows"]) for t, d in dump["tables"].items()}
    click.echo(f"Exported {_counts_line(counts)} to {path}.")


@click.command("import")
@click.option("--all", "everything", is_flag=True, help="Restore a `z2v export --all` file (required).")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@pass_app
def import_cmd(app: AppContext, everything: bool, file: Path) -> None:
    """Restore FILE from `z2v export --all` into an empty store, row for row."""
    from zero2vllm.tracker.store import StoreError

    if not everything:
        raise Z2VError("say what to import: --all FILE (an export); a plan text is `z2v plan import FILE`")
    try:
        raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
        doc = json.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise Z2VError(f"cannot read {file}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Z2VError(f"{file} is not a JSON export ({exc}); make one with `z2v export --all`") from None
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT or "tables" not in doc:
        raise Z2VError(f"{file} is not a zero2vllm export; make one with `z2v export --all`")
    if doc.get("version", 0) > EXPORT_VERSION:
        raise Z2VError(f"{file} was written by a newer zero2vllm (export version {doc['version']}); upgrade")
    store = app.store
    held = {t: n for t, n in store.row_counts().items() if n}
    if held:
        raise Z2VError(f"the store {store.path} is not empty ({_counts_line(held)}); import --all restores "
                       f"into an empty store only: move that file away or pass --db NEW.db")
    try:
        loaded = store.load_tables(doc)
    except StoreError as exc:
        raise Z2VError(f"{file}: {exc}") from None
    except Exception as exc:  # a malformed row (wrong column count, a CHECK): nothing was written
        raise Z2VError(f"{file} has a row this store rejects ({exc}); nothing was imported") from None
    click.echo(f"Imported {_counts_line(loaded)} into {store.path}.")


@click.command("backup")
@click.argument("dest", required=False, type=click.Path(path_type=Path))
@pass_app
def backup_cmd(app: AppContext, dest: Path | None) -> None:
    """Copy the database to DEST (a file, or a directory; default $ZERO2VLLM_HOME/backups/),
    safely while other processes use it (SQLite's online backup API)."""
    import sqlite3

    from zero2vllm.paths import data_dir
    from zero2vllm.tracker.store import Store

    name = f"zero2vllm-{time.strftime('%Y%m%d-%H%M%S')}.db"
    if dest is None:
        dest = data_dir() / "backups" / name
        dest.parent.mkdir(exist_ok=True)
    elif dest.is_dir():
        dest = dest / name
    if dest.exists():
        raise Z2VError(f"{dest} already exists; give a new file name")
    if not dest.parent.is_dir():
        raise Z2VError(f"{dest.parent} is not a directory; create it or give another DEST")
    store = app.store
    try:
        store.backup_to(dest)
        ok, counts = Store.check_file(dest)
    except sqlite3.Error as exc:
        dest.unlink(missing_ok=True)
        raise Z2VError(f"backup to {dest} failed: {exc}") from None
    if ok != "ok":
        raise Z2VError(f"the backup {dest} failed its integrity check: {ok}")
    click.echo(f"Backed up {store.path} to {dest} ({dest.stat().st_size / 1024:.0f} KiB; "
               f"{_counts_line(counts)}; integrity ok).")


def register(group: click.Group) -> None:
    for cmd in (export_cmd, import_cmd, backup_cmd):
        group.add_command(cmd)
