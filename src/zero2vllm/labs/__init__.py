"""Labs: hands-on exercises whose checks run on the learner's own code.

A lab is one sub-package of `zero2vllm.labs` (see README.md beside this file): its `__init__.py`
defines `LAB = Lab(...)` (metadata only, no heavy imports), `scaffold/` holds the files
`z2v lab init` copies, `reference/` a solution that passes, and `checks.py` the criteria.
This module only finds labs and links them to the plan; it imports no torch, so `z2v lab list`
stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

LABS_DIR = Path(__file__).parent


@dataclass(frozen=True)
class Lab:
    id: str  # what the learner types: `z2v check transformer`
    title: str
    week: int  # the plan week whose hands-on deliverable this lab verifies
    keywords: tuple[str, ...]  # words of that plan item's title, to find it (see find_plan_item)
    summary: str = ""  # one line for `z2v lab list`
    entry: str | None = "model.py"  # file the checks import as ctx.module; None: checks load it
    time_limit_s: float = 300.0  # the whole check, in its own process
    host_network: bool = False  # the check talks to a server outside its sandbox (labs/sandbox.py)
    package: str = ""  # filled in by discovery: "zero2vllm.labs.<dir>"

    @property
    def dir(self) -> Path:
        return LABS_DIR / self.package.rsplit(".", 1)[-1]

    @property
    def scaffold_dir(self) -> Path:
        return self.dir / "scaffold"

    @property
    def reference_dir(self) -> Path:
        return self.dir / "reference"

    @property
    def checks_module(self) -> str:
        return f"{self.package}.checks"

    @property
    def has_run(self) -> bool:
        """Whether the lab has a `run.py` for `z2v lab run` (training, a benchmark...)."""
        return (self.dir / "run.py").exists()


_labs: dict[str, Lab] | None = None


def all_labs() -> dict[str, Lab]:
    """Every lab, by id, ordered by week: each sub-package with a LAB in its __init__."""
    global _labs
    if _labs is None:
        found = []
        for mod in pkgutil.iter_modules([str(LABS_DIR)]):
            if not mod.ispkg or mod.name.startswith("_"):
                continue
            name = f"{__name__}.{mod.name}"
            lab = getattr(importlib.import_module(name), "LAB", None)
            if isinstance(lab, Lab):
                found.append(Lab(**{**lab.__dict__, "package": name}))
        found.sort(key=lambda lab: (lab.week, lab.id))
        _labs = {lab.id: lab for lab in found}
    return _labs


def get_lab(lab_id: str) -> Lab | None:
    return all_labs().get(lab_id)


# -- other `z2v check` subjects -----------------------------------------------------------------
# `z2v check LAB` checks a lab; any other first word is looked up here, so a module can add
# e.g. `z2v check summary FILE --week N` without touching the labs command:
#     from zero2vllm.labs import register_check
#     register_check(summary_command)   # a click.Command whose name is "summary"
_check_handlers: dict[str, Any] = {}


def register_check(command: Any) -> None:
    if command.name in _check_handlers or command.name in all_labs():
        raise ValueError(f"`z2v check {command.name}` is already taken")
    _check_handlers[command.name] = command


def check_handlers() -> dict[str, Any]:
    return dict(_check_handlers)


# -- the plan item a lab verifies ----------------------------------------------------------------
ITEM_KINDS = ("deliverable", "hands-on", "project")  # preferred in this order


def find_plan_item(items: Iterable[Any], lab: Lab) -> Any | None:
    """The plan item a passing check marks done: in the lab's week, of a hands-on kind, whose
    title shares the most keywords with the lab (a deliverable beats a hands-on item on ties).
    Items need `.id`, `.week`, `.kind`, `.title`; anything missing is tolerated."""
    best, best_key = None, None
    words = [w.lower() for w in lab.keywords]
    for item in items:
        if getattr(item, "week", None) != lab.week:
            continue
        kind = str(getattr(item, "kind", "") or "").lower()
        if kind not in ITEM_KINDS:
            continue
        title = str(getattr(item, "title", "") or "").lower()
        hits = sum(1 for w in words if re.search(rf"\b{re.escape(w)}", title))
        if hits == 0:
            continue
        key = (hits, -ITEM_KINDS.index(kind))
        if best_key is None or key > best_key:
            best, best_key = item, key
    return best
