"""Write docs/cli.md, the command reference, from the CLI's own --help texts.

    python scripts/cli_reference.py          # rewrite docs/cli.md
    python scripts/cli_reference.py --check  # exit 1 if docs/cli.md is out of date (tests do this)
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"
DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def walk(cmd: click.Command, path: list[str]) -> list[tuple[str, str]]:
    ctx = click.Context(cmd, info_name=" ".join(path), terminal_width=100, max_content_width=100)
    out = [(" ".join(path), cmd.get_help(ctx))]
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            out += walk(cmd.get_command(ctx, name), path + [name])
    return out


def reference() -> str:
    from zero2vllm.cli import main

    parts = [START, ""]
    for name, text in walk(main, ["z2v"]):
        parts += [f"### `{name}`", "", "```", text.rstrip(), "```", ""]
    parts.append(END)
    return "\n".join(parts)


def main() -> int:
    text = DOC.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    new = head + reference() + tail
    if "--check" in sys.argv:
        if new != text:
            print("docs/cli.md is out of date: run python scripts/cli_reference.py")
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
