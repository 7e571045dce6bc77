"""One door for lab evidence: record a run, work out a lab's status, close its plan item.

Every run a lab (or an instrument) produces is stored here: `z2v check`, `z2v lab run`,
`z2v bench`, `z2v compare`, `z2v profile kv` and `z2v check summary` each build an evidence
dict and call `record`. A passing check closes the plan item the lab names (`Lab.plan_item`)
through actions.py, so it is journalled and `z2v undo` reverses it. The lab-status rule is
`state_of`, used by `z2v lab list`, `z2v week` and the dashboard alike.

Only the standard library and the tracker modules: `z2v lab list` and `z2v week` import this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zero2vllm.tracker import actions, contrib_settings
from zero2vllm.tracker import progress
from zero2vllm.tracker.plan import Item, Plan, PlanError
from zero2vllm.tracker.store import Store

FIELDS = ("duration_s", "code_path", "files_hash", "criteria", "metrics", "artifacts", "refused",
          "isolation")


@dataclass
class Recorded:
    run_id: int
    closed: str | None = None  # the plan item this run marked done, if any


def record(store: Store, evidence: dict, *, plan: Plan | None = None) -> Recorded:
    """Store one run. EVIDENCE has "lab", "kind" (check, run, bench, compare, profile, summary),
    "passed" and any of FIELDS. A passing full check also closes the lab's plan item."""
    ev = dict(evidence)
    try:
        lab_id, kind, passed = ev.pop("lab"), ev.pop("kind"), bool(ev.pop("passed"))
    except KeyError as exc:
        raise ValueError(f"evidence needs {exc.args[0]!r}") from None
    unknown = sorted(set(ev) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown evidence fields {unknown}; known: {', '.join(FIELDS)}")
    run_id = store.add_lab_run(lab_id, passed, kind=kind, **ev)
    closed = None
    if kind == "check" and passed:
        closed = close_lab_item(store, lab_id, plan)
    return Recorded(run_id, closed)


def close_item(store: Store, plan: Plan, item_id: str) -> str | None:
    """Mark ITEM done through actions (journalled, undoable) unless it is done already;
    returns the id when it changed."""
    state = store.state(item_id)
    if state is not None and state.status == "done":
        return None
    actions.set_status(store, plan, item_id, "done", exact=True)
    return item_id


def close_lab_item(store: Store, lab_id: str, plan: Plan | None = None) -> str | None:
    from zero2vllm.labs import get_lab

    lab = get_lab(lab_id)
    plan = plan if plan is not None else plan_or_none(store)
    item = plan_item(lab, plan) if lab is not None else None
    return close_item(store, plan, item.id) if item is not None else None


def plan_or_none(store: Store) -> Plan | None:
    try:
        return progress.load_plan(store)
    except PlanError:  # a broken plan text must not stop a run from being recorded
        return None


def plan_item(lab: Any, plan: Plan | None) -> Item | None:
    """The item LAB names in PLAN, or None: the lab is then unlinked (never guessed)."""
    if plan is None or not getattr(lab, "plan_item", None):
        return None
    return plan.item(lab.plan_item)


def check_inputs(store: Store, lab: Any) -> dict:
    """What a lab's checks read from the store, passed into the check process (which never
    opens the store): {"runs": {kind: [run, ...]}} for each kind in `lab.evidence_inputs`;
    "contrib" (the settings of `z2v contrib init`) and "predictions" (the lab's locked guesses:
    name -> {"salt", "digest", "revealed"}, never an answer) when `lab.check_inputs` names them."""
    kinds = getattr(lab, "evidence_inputs", ()) or ()
    wanted = getattr(lab, "check_inputs", ()) or ()
    inputs: dict = {"runs": {k: store.lab_runs(lab.id, kind=k) for k in kinds}} if kinds else {}
    if "contrib" in wanted:
        inputs["contrib"] = contrib_settings.get_all(store)
    if "predictions" in wanted:
        inputs["predictions"] = {
            name: {"salt": r["salt"], "digest": r["digest"], "revealed": r["revealed_at"] is not None}
            for name, r in contrib_settings.locked(store, lab.id).items()}
    return inputs


# -- status ------------------------------------------------------------------------------------
STATES = ("passed", "failing", "runs only", "not started")


def state_of(runs: list[dict]) -> str:
    """The lab-status rule: passed once any full check passed; failing when checks ran and none
    passed; runs only when only other runs (training, benchmarks) exist; else not started."""
    checks = [r for r in runs if r["kind"] == "check"]
    if any(r["passed"] for r in checks):
        return "passed"
    if checks:
        return "failing"
    return "runs only" if runs else "not started"


@dataclass
class LabStatus:
    id: str
    state: str
    lab: Any = None  # the Lab, or None for a subject with runs but no lab (e.g. "summary")
    runs: list[dict] = field(default_factory=list)  # newest first
    item: Item | None = None
    item_status: str | None = None

    @property
    def last_check(self) -> dict | None:
        return next((r for r in self.runs if r["kind"] == "check"), None)

    @property
    def unlinked(self) -> bool:
        """The lab names a plan item that the plan in use does not have."""
        return self.lab is not None and bool(self.lab.plan_item) and self.item is None

    def as_json(self) -> dict:
        last = self.last_check
        return {
            "id": self.id, "title": self.lab.title if self.lab else self.id,
            "week": self.lab.week if self.lab else None, "state": self.state,
            "plan_item": self.lab.plan_item if self.lab else None,
            "linked": self.item is not None, "item_status": self.item_status,
            "runs": len(self.runs),
            "last_check": None if last is None else {
                "at": last["at"], "passed": last["passed"],
                "criteria_passed": sum(1 for c in last["criteria"] if c.get("passed")),
                "criteria": len(last["criteria"]),
                "warnings": sum(1 for c in last["criteria"] if c.get("status") == "warn")},
        }


def statuses(store: Store, plan: Plan | None, *, others: bool = False) -> list[LabStatus]:
    """Every lab's status in week order; with OTHERS, also subjects that only have runs."""
    from zero2vllm.labs import all_labs

    by_lab: dict[str, list[dict]] = {}
    for run in store.lab_runs():
        by_lab.setdefault(run["lab"], []).append(run)
    states = store.states()
    labs = all_labs()
    ids = list(labs) + (sorted(set(by_lab) - set(labs)) if others else [])
    out = []
    for lab_id in ids:
        lab = labs.get(lab_id)
        runs = list(reversed(by_lab.get(lab_id, [])))
        item = plan_item(lab, plan) if lab is not None else None
        st = states.get(item.id) if item is not None else None
        out.append(LabStatus(lab_id, state_of(runs), lab, runs, item,
                             (st.status if st is not None else "todo") if item is not None else None))
    return out


def by_item(store: Store, plan: Plan | None) -> dict[str, LabStatus]:
    """Lab statuses keyed by the plan item each lab is linked to (for the week views)."""
    return {s.item.id: s for s in statuses(store, plan) if s.item is not None}
