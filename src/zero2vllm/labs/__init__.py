"""Labs: hands-on exercises whose checks run on the learner's own code.

A lab is one sub-package of `zero2vllm.labs` (see README.md beside this file): its `__init__.py`
defines `LAB = Lab(...)` (metadata only, no heavy imports), `scaffold/` holds the files
`z2v lab init` copies, `reference/` a solution that passes, and `checks.py` the criteria.
This module is the lab catalogue: it finds labs and their metadata (the plan item each one
closes is named explicitly, `plan_item`); it imports no torch, so `z2v lab list` stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path

LABS_DIR = Path(__file__).parent


@dataclass(frozen=True)
class Lab:
    id: str  # what the learner types: `z2v check transformer`
    title: str
    week: int  # the plan week whose hands-on deliverable this lab verifies
    plan_item: str | None = None  # the item id a passing check closes ("w1.working-character-level")
    # in the bundled plan; a plan without that id leaves the lab unlinked (never guessed)
    summary: str = ""  # one line for `z2v lab list`
    entry: str | None = "model.py"  # file the checks import as ctx.module; None: checks load it
    time_limit_s: float = 300.0  # the whole check, in its own process
    evidence_inputs: tuple[str, ...] = ()  # kinds of this lab's stored runs its checks read
    # (ctx.inputs["runs"][kind]); the parent reads them, the check process never opens the store
    check_inputs: tuple[str, ...] = ()  # other stored things its checks read: "contrib" (what
    # `z2v contrib init` stored: ctx.inputs["contrib"]), "predictions" (this lab's locked guesses,
    # hashed: ctx.inputs["predictions"]); see tracker/evidence.check_inputs
    caches: tuple[str, ...] = ()  # the user's caches the check may write, by name: "pre-commit"
    # (its hooks' environments: building them needs the network the sandbox does not have)
    host_network: bool = False  # the check talks to a server outside its sandbox (labs/sandbox.py)
    package: str = ""  # filled in by load_lab: "zero2vllm.labs.<dir>"
    root: Path | None = None  # the package's folder, filled in by load_lab
    keywords: tuple[str, ...] = ()  # unused (labs written before plan_item still load); drop it

    @property
    def dir(self) -> Path:
        return self.root or LABS_DIR / self.package.rsplit(".", 1)[-1]

    @property
    def import_root(self) -> Path:
        """The sys.path entry its package is imported from (a child process needs it)."""
        return self.dir.parents[self.package.count(".")]

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
    """Every lab, by id, ordered by week: each sub-package with a LAB in its __init__. Cached,
    and a pure function of the installed sub-packages (nothing registers itself)."""
    global _labs
    if _labs is None:
        found = []
        for mod in pkgutil.iter_modules([str(LABS_DIR)]):
            if not mod.ispkg or mod.name.startswith("_"):
                continue
            lab = load_lab(f"{__name__}.{mod.name}")
            if lab is not None:
                found.append(lab)
        found.sort(key=lambda lab: (lab.week, lab.id))
        _labs = {lab.id: lab for lab in found}
    return _labs


def load_lab(package: str) -> Lab | None:
    """The LAB a package defines (with `package` and `root` filled in), or None."""
    module = importlib.import_module(package)
    lab = getattr(module, "LAB", None)
    if not isinstance(lab, Lab):
        return None
    return Lab(**{**lab.__dict__, "package": package, "root": Path(module.__file__).parent})


def get_lab(lab_id: str) -> Lab | None:
    return all_labs().get(lab_id)
