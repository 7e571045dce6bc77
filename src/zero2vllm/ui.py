"""Terminal output: rich when on a terminal, plain text when piped or NO_COLOR is set."""

from __future__ import annotations

import json
import os
import sys

import click


def console():
    from rich.console import Console

    plain = not sys.stdout.isatty() or "NO_COLOR" in os.environ
    return Console(no_color=plain, highlight=False, soft_wrap=True,
                   force_terminal=False if plain else None, emoji=False)


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
