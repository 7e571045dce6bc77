"""The CLI's static command table (cli.COMMANDS) and the modules agree, so a command is never
missing from --help or imported by accident, and start-up stays lazy."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import click

from zero2vllm import cli
from zero2vllm.commands import serve

COMMANDS_DIR = Path(cli.__file__).parent / "commands"


def _defined(table_name: str) -> dict[str, str]:
    """name -> module for every command the modules define in dicts called `table_name`."""
    found = {}
    for f in sorted(COMMANDS_DIR.glob("*.py")):
        if f.name.startswith("_"):
            continue
        module = importlib.import_module(f"zero2vllm.commands.{f.stem}")
        for name, cmd in getattr(module, table_name, {}).items():
            assert isinstance(cmd, click.Command) and cmd.name == name, (f.stem, name)
            found[name] = f.stem
    return found


def test_table_names_every_command_of_every_module():
    assert _defined("COMMANDS") == cli.COMMANDS


def test_serve_table_names_every_serve_subcommand():
    table = {name: module.partition(":")[0] for name, module in serve.SUBCOMMANDS.items()}
    assert _defined("SERVE_COMMANDS") == table


def test_help_lists_the_table():
    result = click.testing.CliRunner().invoke(cli.main, ["--help"])
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].strip().splitlines()]
    assert listed == sorted(cli.COMMANDS)


def test_status_imports_only_its_module(tmp_path):
    code = ("import sys; from zero2vllm.cli import main\n"
            "try: main(['status'])\nexcept SystemExit: pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('zero2vllm.commands.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"ZERO2VLLM_HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                              "PYTHONPATH": str(Path(cli.__file__).parents[1])})
    assert out.stdout.strip().splitlines()[-1] == "['zero2vllm.commands._app', 'zero2vllm.commands.track']"
