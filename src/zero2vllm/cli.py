"""The `z2v` command line: a thin layer of click commands over the library.

Command modules live in `zero2vllm.commands`; each has a `register(group)` function and imports
nothing heavy at module level. They are discovered, not listed, so a new module needs no edit here,
and loaded lazily: `z2v status` imports only the tracker's commands, `z2v --help` imports them all.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import click

from zero2vllm import __version__


class Z2VError(click.ClickException):
    """A usage error: one line on stderr, exit code 2, nothing changed."""

    exit_code = 2

    def show(self, file=None) -> None:  # one line, no usage dump
        click.echo(f"Error: {self.format_message()}", err=True)


class AppContext:
    """What every command needs: where the store is, opened on first use."""

    def __init__(self, db: Path | None):
        self._db = db
        self._store = None

    @property
    def db_path(self) -> Path:
        if self._db is None:
            from zero2vllm.paths import db_path

            self._db = db_path()  # DataDirError (one line) when the folder cannot be made
        return self._db

    @property
    def store(self):
        if self._store is None:
            from zero2vllm.tracker.store import Store, StoreError

            try:
                self._store = Store.open(self.db_path)
            except StoreError as exc:
                raise Z2VError(str(exc)) from None
        return self._store


pass_app = click.make_pass_decorator(AppContext)


def storage_error(ctx: click.Context, exc: BaseException) -> str | None:
    """The one line for an error of the store or the data directory that reached the top (a
    lock held past the busy timeout, a read-only or corrupt file, a folder that cannot be
    made); None for anything else. sqlite3 is looked up, not imported: --help stays fast."""
    from zero2vllm.paths import DataDirError

    if isinstance(exc, DataDirError):
        return str(exc)
    sqlite3 = sys.modules.get("sqlite3")
    store = sys.modules.get("zero2vllm.tracker.store")
    app = ctx.obj if isinstance(ctx.obj, AppContext) else None
    where = app._db if app is not None and app._db is not None else "the zero2vllm database"
    if store is not None and isinstance(exc, store.StoreError):
        return str(exc)
    if sqlite3 is not None and isinstance(exc, sqlite3.Error) and store is not None:
        return store.explain(where, exc)
    return None

# Commands whose module is known up front, so running them imports nothing else (start-up time).
EAGER_HINTS = {
    name: "track"
    for name in ("status", "week", "next", "start", "stop", "timer", "log", "done", "skip", "reopen",
                 "undo", "note", "history")
} | {"plan": "plan"}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is asked for."""

    _loaded: set[str] = set()

    def _load(self, module: str) -> None:
        if module not in self._loaded:
            self._loaded.add(module)
            importlib.import_module(f"zero2vllm.commands.{module}").register(self)

    def _load_all(self) -> None:
        folder = Path(__file__).parent / "commands"
        for name in sorted(os.listdir(folder)):  # os.listdir: pkgutil costs 14 ms at start-up
            if name.endswith(".py") and not name.startswith("_"):
                self._load(name[:-3])

    def parse_args(self, ctx, args):
        # bytes that are not UTF-8 arrive as surrogates (PEP 383) and would fail deep inside,
        # when SQLite or the terminal meets them; refuse them here, naming the argument
        for arg in args:
            try:
                arg.encode("utf-8")
            except UnicodeEncodeError:
                shown = arg.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                raise Z2VError(f"the argument {shown[:60]!r} is not UTF-8 text; retype it "
                               "(or set a UTF-8 locale)") from None
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            message = storage_error(ctx, exc)
            if message is None:
                raise
            raise Z2VError(message) from None

    def get_command(self, ctx, name):
        if name not in self.commands:
            if name in EAGER_HINTS:
                self._load(EAGER_HINTS[name])
            else:
                self._load_all()
        return self.commands.get(name)

    def list_commands(self, ctx):
        self._load_all()
        return sorted(self.commands)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    type=click.Path(path_type=Path),  # a directory is refused by Store.open, in one line
    envvar="ZERO2VLLM_DB",
    help="SQLite file to use (default: $ZERO2VLLM_HOME/zero2vllm.db or the per-user data dir).",
)
@click.version_option(__version__, prog_name="zero2vllm")
@click.pass_context
def main(ctx: click.Context, db: Path | None) -> None:
    """zero2vllm: your study plan, progress, labs and benchmarks on the way to vLLM."""
    ctx.obj = AppContext(db)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
