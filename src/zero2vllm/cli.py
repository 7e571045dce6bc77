"""The `z2v` command line: a thin layer of click commands over the library.

Each command lives in a module of `zero2vllm.commands`, which lists what it defines in `COMMANDS`.
The table below names the module of every top-level command, so running one imports only its
module (`z2v status` imports `commands.track` alone) and nothing depends on import order.
`tests/test_cli_table.py` checks the table against what the modules define.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from zero2vllm import __version__
from zero2vllm.commands._app import AppContext, LazyGroup, Z2VError

COMMANDS = {
    # tracking (commands/track.py)
    **dict.fromkeys(("status", "week", "next", "start", "stop", "timer", "log", "done", "skip",
                     "reopen", "undo", "note", "history"), "track"),
    "plan": "plan",
    "export": "data", "import": "data", "backup": "data",
    "report": "report",
    "card": "review", "review": "review",
    # labs
    "lab": "labs", "check": "labs", "contrib": "contrib",
    # instruments, real vLLM, the engine, servers
    "bench": "bench", "compare": "compare", "profile": "profile",
    "vllm": "vllm", "engine": "engine", "serve": "serve",
    # the group server's accounts (commands/group_server.py)
    "group-admin": "group_server",
}


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


class Z2VGroup(LazyGroup):
    """The top-level group: refuses arguments that are not UTF-8, and turns store errors that
    reach the top into the one-line usage error (exit 2)."""

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


@click.group(cls=Z2VGroup, table=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
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
