"""What every command module shares: the usage error, and the app context with its store.

Command modules import this, never `zero2vllm.cli`, so the CLI entry can import them without a cycle.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click


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


class LazyGroup(click.Group):
    """A group whose commands live in other modules, named in a static table {name: module}, and
    imported only when that command is asked for. Each module lists its commands in `COMMANDS`
    (or in another dict, named as "module:DICT")."""

    def __init__(self, *args, table: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.table = table

    def get_command(self, ctx, name):
        module = self.table.get(name)
        if module is None:
            return None
        module, _, table = module.partition(":")
        return getattr(importlib.import_module(f"zero2vllm.commands.{module}"), table or "COMMANDS")[name]

    def list_commands(self, ctx):
        return sorted(self.table)
