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

    @criterion("heads split", needs=("output shapes",))   # not run when "output shapes" failed
    def heads(ctx):
        if not found_a_route:
            raise CheckWarning("could not check: the attention is not observable")  # WARN, no fail
"""

from __future__ import annotations

import importlib.util
import sys
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


class CheckWarning(Exception):
    """A criterion that could not be checked (no behavioural route to what it wants to see):
    shown as WARN, does not fail the check, and is stored with the run as a warning. Say why,
    e.g. `CheckWarning("could not check: attention weights are not observable")`."""

    def detail(self) -> str:
        text = str(self)
        return text if text.lower().startswith("could not check") else f"could not check: {text}"


@dataclass
class Criterion:
    name: str
    func: Callable[["Context"], Any]
    order: int
    needs: tuple[str, ...] = ()  # criteria that must pass (or warn) before this one runs


def criterion(name: str, needs: tuple[str, ...] | list[str] | str = ()) -> Callable:
    """Mark `func(ctx)` as a named criterion of the module it is defined in; `needs` names
    criteria defined earlier in that module: when one of them fails, this one is reported
    "not run: needs X" without running."""
    needs = (needs,) if isinstance(needs, str) else tuple(needs)

    def wrap(func: Callable) -> Callable:
        # Kept in the checks module's own namespace, not a global registry: what a module
        # defines is all it gets, whatever was imported before (a re-definition replaces).
        found = func.__globals__.setdefault(_CRITERIA, [])
        known = [c.name for c in found]
        unknown = [n for n in needs if n not in known and n != "imports"]
        if unknown:
            raise ValueError(f"criterion {name!r} needs {unknown}, not defined before it")
        found[:] = [c for c in found if c.name != name]
        found.append(Criterion(name, func, len(found), needs))
        return func

    return wrap


_CRITERIA = "__z2v_criteria__"


def criteria_of(module: Any) -> list[Criterion]:
    """The criteria of a checks module (or its name), in the order they are defined."""
    if isinstance(module, str):
        module = sys.modules[module]
    return list(vars(module).get(_CRITERIA, []))


@dataclass
class Context:
    """What every criterion gets: the learner's path and module, options, and places to write."""

    path: Path  # the file or directory being checked
    module: Any = None  # the lab's entry file, imported (None when the lab has no entry)
    fast: bool = False  # shorter training etc., for the tool's own tests; never recorded as a pass
    metrics: dict = field(default_factory=dict)  # numbers worth keeping (loss, speed, params)
    state: dict = field(default_factory=dict)  # shared between criteria of one run
    inputs: dict = field(default_factory=dict)  # what the parent read for the checks (the
    # store's evidence, e.g. inputs["compare_runs"]); a check process never opens the store


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


def learner_frame(exc: BaseException, learner_root: Path | None = None):
    """(file, line, qualified function name, source line) of the deepest frame of EXC in the
    learner's code (any frame when none is theirs), or None."""
    root = str(learner_root.resolve()) if learner_root else None
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, tb.tb_lineno, getattr(code, "co_qualname", code.co_name)))
        tb = tb.tb_next
    mine = [f for f in frames if root and str(Path(f[0]).resolve()).startswith(root)]
    if not (mine or frames):
        return None
    file, line, func = (mine or frames)[-1]
    import linecache

    return file, line, func, linecache.getline(file, line).strip()


def describe_exception(exc: BaseException, learner_root: Path | None = None) -> str:
    """One readable paragraph: the exception and the deepest frame in the learner's code."""
    text = f"your code raised {type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError) and exc.filename:
        text = f"your code has a syntax error: {exc.msg}\n  at {exc.filename}:{exc.lineno}"
        return text + (f"\n    {exc.text.strip()}" if exc.text else "")
    frame = learner_frame(exc, learner_root)
    if frame is not None:
        file, line, func, source = frame
        text += f"\n  at {file}:{line} in {func}"
        if source:
            text += f"\n    {source}"
    return text


def exception_cause(exc: BaseException, learner_root: Path | None = None) -> dict | None:
    """Where the learner's code raised EXC, so failures with one cause can be shown once:
    {"error", "file", "line", "func"}; None when the exception did not come from their code."""
    frame = learner_frame(exc, learner_root)
    if frame is None or learner_root is None:
        return None
    file, line, func, _ = frame
    if not str(Path(file).resolve()).startswith(str(learner_root.resolve())):
        return None
    return {"error": type(exc).__name__, "file": file, "line": line, "func": func}


def shared_causes(criteria: list[dict]) -> list[tuple[dict, list[str]]]:
    """Failures that share one cause (the same exception type at the same line of the
    learner's code), with the criteria that failed of it or were not run because of it;
    only causes behind two or more criteria, in the order first seen."""
    groups: dict[tuple, tuple[dict, list[str]]] = {}
    owner: dict[str, tuple] = {}
    for crit in criteria:
        cause = crit.get("cause")
        if cause and not crit.get("passed"):
            key = (cause["error"], cause["file"], cause["line"])
            groups.setdefault(key, (cause, []))[1].append(crit["name"])
            owner[crit["name"]] = key
        elif crit.get("status") == "not run":
            key = next((owner[n] for n in crit.get("blocked_by", []) if n in owner), None)
            if key is not None:
                groups[key][1].append(crit["name"])
                owner[crit["name"]] = key
    return [g for g in groups.values() if len(g[1]) >= 2]


def cause_message(cause: dict, names: list[str]) -> str:
    """'fix `GPT.__init__` (model.py:42) first; 7 criteria depend on it'."""
    return (f"fix `{cause['func']}` ({Path(cause['file']).name}:{cause['line']}) first: it raised "
            f"{cause['error']}; {len(names)} criteria depend on it")
