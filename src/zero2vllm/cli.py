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

            self._db = db_path()
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

# Commands whose module is known up front, so running them imports nothing else (start-up time).
EAGER_HINTS = {
    name: "track"
    for name in ("status", "week", "next", "start", "stop", "log", "done", "skip", "reopen", "undo",
                 "note", "history")
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
    type=click.Path(dir_okay=False, path_type=Path),
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
