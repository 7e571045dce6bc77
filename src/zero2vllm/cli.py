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
from zero2vllm.commands._app import AppContext, LazyGroup

COMMANDS = {
    # tracking (commands/track.py)
    **dict.fromkeys(("status", "week", "next", "start", "stop", "log", "done", "skip", "reopen",
                     "undo", "note", "history"), "track"),
    "plan": "plan",
    "export": "data", "import": "data", "backup": "data",
    "report": "report",
    "card": "review", "review": "review",
    # labs
    "lab": "labs", "check": "labs",
    # instruments, real vLLM, the engine, servers
    "bench": "bench", "compare": "compare", "profile": "profile",
    "vllm": "vllm", "engine": "engine", "serve": "serve",
}


@click.group(cls=LazyGroup, table=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
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
