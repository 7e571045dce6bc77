"""What the parent believes of the child's event lines: only the runner's own, in its order.

The learner's code runs inside the runner process, so it can write to any descriptor it holds.
Each line must therefore carry the run's nonce (read by the runner before any learner code ran)
and the next sequence number, and follow the runner's grammar: one plan, then each criterion's
start and result once, metrics, done, nothing after. The parent re-derives what it can itself:
whether the entry file compiles when "imports" is claimed to pass, the seconds each criterion
took, and (check.py) that the files were not changed and the process ended as the runner ends.
Anything else refuses the whole result, with the reason.
"""

from __future__ import annotations

import hmac
import importlib
import json
import time
from pathlib import Path

from zero2vllm.labs import Lab
from zero2vllm.labs.framework import criteria_of

IMPORT_CRITERION = "imports"


def expected_plan(lab: Lab, only: list[str] | None) -> list[str]:
    """The criteria the runner must announce, worked out here (checks modules import nothing
    heavy at the top), so a forged shorter plan cannot pass."""
    module = importlib.import_module(lab.checks_module)
    names = [c.name for c in criteria_of(module) if not only or c.name in only]
    return ([IMPORT_CRITERION] if lab.entry else []) + names


class Verifier:
    def __init__(self, nonce: str, path: Path, lab: Lab, plan: list[str] | None = None):
        self.nonce, self.path, self.lab = nonce, Path(path), lab
        self.expected = plan
        self.events: list[dict] = []  # the accepted events, without nonce and seq
        self.verified: set[str] = set()  # criteria whose result was accepted
        self.seconds: dict[str, float] = {}
        self.refused: str | None = None
        self._seq = 0
        self._plan: list[str] | None = None
        self._started: dict[str, float] = {}
        self._stage = "plan"  # plan -> criteria -> done

    def refuse(self, why: str) -> None:
        if self.refused is None:
            self.refused = why

    def accept(self, line: bytes) -> dict | None:
        """The event on LINE if it is the runner's, else None (and the result is refused)."""
        if self.refused:
            return None
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            self.refuse("a line on the results pipe is not one of the checker's events "
                        "(did your code write to a file descriptor it did not open?)")
            return None
        nonce = str(event.pop("nonce", ""))
        if not hmac.compare_digest(nonce.encode(), self.nonce.encode()):
            self.refuse("an event without this run's secret arrived on the results pipe: "
                        "something other than the checker tried to report results")
            return None
        if event.pop("seq", None) != self._seq:
            self.refuse("the checker's events arrived out of sequence (some were forged or "
                        "removed)")
            return None
        self._seq += 1
        problem = self._grammar(event)
        if problem:
            self.refuse(f"the checker's events are out of order: {problem}")
            return None
        self.events.append(event)
        return event

    def _grammar(self, event: dict) -> str | None:
        kind, name = event.get("event"), event.get("name")
        if self._stage == "done":
            return f"a {kind!r} event after the check had finished"
        if kind == "plan":
            if self._stage != "plan" or not isinstance(event.get("criteria"), list):
                return "a second plan"
            self._plan = [str(n) for n in event["criteria"]]
            if self.expected is not None and self._plan != self.expected:
                return f"the plan {self._plan} is not the lab's criteria {self.expected}"
            self._stage = "criteria"
            return None
        if self._plan is None:
            return f"a {kind!r} event before the plan"
        if kind == "start":
            if name not in self._plan or name in self.verified or name in self._started:
                return f"criterion {name!r} started twice, or is not in the plan"
            self._started[name] = time.perf_counter()
            return None
        if kind == "result":
            if name not in self._plan or name in self.verified:
                return f"a second result for {name!r}, or one not in the plan"
            if event.get("passed") and name not in self._started:
                return f"{name!r} passed without having started"
            if name in self._started:
                self.seconds[name] = round(time.perf_counter() - self._started[name], 3)
            if event.get("passed") and name == IMPORT_CRITERION and self.lab.entry:
                problem = self._entry_compiles()
                if problem:
                    return problem
            self.verified.add(name)
            return None
        if kind == "metrics":
            return None
        if kind == "done":
            missing = [n for n in self._plan if n not in self.verified]
            if missing:
                return f"done before the result of {missing[0]!r}"
            self._stage = "done"
            return None
        return None  # another kind of event (a later runner's): shown, never part of the verdict

    def _entry_compiles(self) -> str | None:
        """Re-derived here: a claimed import needs an entry file that exists and compiles."""
        file = self.path if self.path.is_file() else self.path / self.lab.entry
        try:
            compile(file.read_bytes(), str(file), "exec")
        except (OSError, SyntaxError, ValueError) as exc:
            return f"'imports' reported passing, but {file.name} does not compile here ({exc})"
        return None

    def finish(self, returncode: int | None) -> None:
        """After the process ended: a finished run ends as the runner does (exit 0 or 1)."""
        if self._stage == "done" and returncode not in (0, 1):
            self.refuse(f"the checker reported done, then its process ended with code "
                        f"{returncode}, which the checker never does")
