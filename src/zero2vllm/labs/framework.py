"""What a lab's checks.py is written with: named criteria that pass, or fail saying why.

    from zero2vllm.labs.framework import CheckFailed, criterion

    @criterion("output shapes")
    def shapes(ctx):
        logits, loss = ctx.module.GPT(cfg)(idx)
        if logits.shape != (2, 8, 65):
            raise CheckFailed("logits have the wrong shape", expected="(2, 8, 65)",
                              got=str(tuple(logits.shape)), hint="return one row per position")
        ctx.metrics["params"] = ...
        return "logits (2, 8, 65), loss a scalar"      # optional detail shown on a pass

Criteria run in the order they are defined, in a child process (see runner.py), each on its
own: an exception in one fails that one only. Any exception other than CheckFailed is reported
as "your code raised ..." with the line of the learner's file it came from.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


class CheckFailed(Exception):
    """A criterion is not met: say what was expected, what happened, and what to try."""

    def __init__(self, message: str, *, expected: str | None = None, got: str | None = None,
                 hint: str | None = None):
        super().__init__(message)
        self.message, self.expected, self.got, self.hint = message, expected, got, hint

    def detail(self) -> str:
        lines = [self.message]
        if self.expected is not None:
            lines.append(f"expected: {self.expected}")
        if self.got is not None:
            lines.append(f"got: {self.got}")
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


@dataclass
class Criterion:
    name: str
    func: Callable[["Context"], Any]
    order: int


_REGISTRY: dict[str, list[Criterion]] = {}


def criterion(name: str) -> Callable:
    """Register `func(ctx)` as a named criterion of the checks module it is defined in."""

    def wrap(func: Callable) -> Callable:
        items = _REGISTRY.setdefault(func.__module__, [])
        items.append(Criterion(name, func, len(items)))
        return func

    return wrap


def criteria_of(module_name: str) -> list[Criterion]:
    return list(_REGISTRY.get(module_name, []))


@dataclass
class Context:
    """What every criterion gets: the learner's path and module, options, and places to write."""

    path: Path  # the file or directory being checked
    module: Any = None  # the lab's entry file, imported (None when the lab has no entry)
    fast: bool = False  # shorter training etc., for the tool's own tests; never recorded as a pass
    metrics: dict = field(default_factory=dict)  # numbers worth keeping (loss, speed, params)
    state: dict = field(default_factory=dict)  # shared between criteria of one run


def entry_file(path: Path, entry: str) -> Path:
    """The file to import: PATH itself when it is a file, else PATH/entry."""
    return path if path.is_file() else path / entry


def load_module(file: Path, name: str = "z2v_learner") -> Any:
    """Import a learner's file as a fresh module, its directory first on sys.path (so it can
    import its own helpers)."""
    if not file.exists():
        raise CheckFailed(
            f"{file} does not exist",
            hint=f"run `z2v lab init` to create it, or pass the path of your {file.name}",
        )
    sys.path.insert(0, str(file.parent))
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def describe_exception(exc: BaseException, learner_root: Path | None = None) -> str:
    """One readable paragraph: the exception and the deepest frame in the learner's code."""
    text = f"your code raised {type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError) and exc.filename:
        text = f"your code has a syntax error: {exc.msg}\n  at {exc.filename}:{exc.lineno}"
        return text + (f"\n    {exc.text.strip()}" if exc.text else "")
    frames = traceback.extract_tb(exc.__traceback__)
    root = str(learner_root.resolve()) if learner_root else None
    mine = [f for f in frames if root and str(Path(f.filename).resolve()).startswith(root)]
    frame = (mine or frames or [None])[-1]
    if frame is not None:
        text += f"\n  at {frame.filename}:{frame.lineno} in {frame.name}"
        if frame.line:
            text += f"\n    {frame.line.strip()}"
    return text
