"""Terminal output for the tracker: styled on a terminal, plain when piped or NO_COLOR is set.

Deliberately not rich: importing rich.console costs a large part of `z2v status`'s start-up
budget, for two styles. Commands that draw tables (labs, benchmarks) use rich themselves.
"""

from __future__ import annotations

import json
import os
import re
import sys

import click


_TAG = re.compile(r"\[(/?)(bold|dim)\]")


class Console:
    """print() with [bold]...[/bold] and [dim]...[/dim] markup, dropped when output is plain."""

    def __init__(self) -> None:
        self.plain = is_plain()

    def print(self, text: str = "", markup: bool = True) -> None:
        if markup:
            text = _TAG.sub(self._style, text)
        click.echo(text)

    def _style(self, m: re.Match) -> str:
        if self.plain:
            return ""
        if m.group(1):
            return "\x1b[0m"
        return "\x1b[1m" if m.group(2) == "bold" else "\x1b[2m"


def console() -> Console:
    return Console()


def is_plain() -> bool:
    return not sys.stdout.isatty() or "NO_COLOR" in os.environ


def bar(fraction: float, width: int = 20) -> str:
    fraction = max(0.0, min(1.0, fraction))
    filled = round(fraction * width)
    full, empty = ("#", "-") if is_plain() else ("█", "░")
    return full * filled + empty * (width - filled)


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def hours(h: float | None) -> str:
    return "-" if h is None else f"{h:.1f}h"


def budget(lo: float | None, hi: float | None) -> str:
    if lo is None:
        return "?"
    return f"{lo:g}h" if hi in (None, lo) else f"{lo:g}-{hi:g}h"


STATUS_MARK = {"todo": "[ ]", "in_progress": "[~]", "done": "[x]", "skipped": "[-]"}
