"""The `z2v` command line: a thin layer of click commands over the library.

Command modules live in `zero2vllm.commands`; each has a `register(group)` function and imports
nothing heavy at module level, so `z2v status` starts fast. They are discovered, not listed, so a
new module needs no edit here.
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
            from zero2vllm.store import Store, StoreError

            try:
                self._store = Store.open(self.db_path)
            except StoreError as exc:
                raise Z2VError(str(exc)) from None
        return self._store


pass_app = click.make_pass_decorator(AppContext)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


def _register_commands() -> None:
    folder = Path(__file__).parent / "commands"
    for name in sorted(os.listdir(folder)):  # os.listdir: pkgutil costs 14 ms at start-up
        if name.endswith(".py") and not name.startswith("_"):
            module = importlib.import_module(f"zero2vllm.commands.{name[:-3]}")
            module.register(main)


_register_commands()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
