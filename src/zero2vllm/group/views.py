"""The group dashboard's data: SQL over the sync projections (g_*), shaped for the templates.

Weeks follow the local tool's calendar (tracker/progress.py: week N starts 7(N-1) days after the
Monday of week 1); a week's commitment is its hour budget in the learner's own plan text. The
cohort reads g_day_total (one row per learner and day), never g_time_entry, so a page costs the
same whether a learner logged a hundred entries or ten thousand.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from datetime import date, timedelta

from zero2vllm.tracker import plan as planlib
from zero2vllm.tracker import progress
from zero2vllm.tracker.evidence import state_of

PLAN_CACHE_SIZE = 256
RECENT_ENTRIES = 30
_plans: OrderedDict[str, planlib.Plan | None] = OrderedDict()  # sha256 of a text -> its parse
_plan_rows: OrderedDict[tuple, str] = OrderedDict()  # (learner, g_plan row version) -> sha256
_plans_lock = threading.Lock()


def today() -> date:
    """The server's day (ZERO2VLLM_NOW fixes it, as for the local tool)."""
    return progress.local_day(progress.now())


def data_version(conn) -> str:
    """A stamp that changes whenever anything a page shows may have changed: the row versions
    (xmin) of every account and every learner's g_activity row. Sync's apply rewrites a learner's
    g_activity row in the same transaction as every change to their projections, so a page
    cached under this stamp is never stale, and reading it costs one small query."""
    return conn.execute(
        "SELECT md5(coalesce((SELECT string_agg(id::text || ':' || xmin::text, ',' ORDER BY id) FROM account), '')"
        " || '|' || coalesce((SELECT string_agg(learner_id::text || ':' || xmin::text, ',' ORDER BY learner_id)"
        " FROM g_activity), '')) AS v").fetchone()["v"]


# -- plans ----------------------------------------------------------------------------------------
def _parsed(conn, learner_id: int, row_version: str) -> planlib.Plan | None:
    """The parse of a learner's plan text, cached by the text's sha256; which text a learner has
    is remembered by the g_plan row's version (xmin), so a page reads and hashes a text only
    when it changed. None for a text that does not parse."""
    with _plans_lock:
        digest = _plan_rows.get((learner_id, row_version))
        if digest in _plans:
            _plans.move_to_end(digest)
            return _plans[digest]
    row = conn.execute("SELECT source_text FROM g_plan WHERE learner_id = %s", (learner_id,)).fetchone()
    text = row["source_text"] if row else ""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    with _plans_lock:
        known = digest in _plans
        plan = _plans.get(digest)
    if not known:
        try:
            plan = planlib.parse(text) if text else None
        except planlib.PlanError:
            plan = None
    with _plans_lock:
        _plans[digest] = plan
        _plan_rows[(learner_id, row_version)] = digest
        while len(_plans) > PLAN_CACHE_SIZE:
            _plans.popitem(last=False)
        while len(_plan_rows) > 4 * PLAN_CACHE_SIZE:
            _plan_rows.popitem(last=False)
    return plan


def plan_start(start_date: str | None, imported_at: str | None) -> date | None:
    """The Monday of week 1: the local tool's rule (`progress.week_one`)."""
    return progress.week_one(start_date, imported_at)


def plans(conn, learner_ids: list[int] | None = None) -> dict[int, tuple[planlib.Plan | None, date | None]]:
    """learner id -> (parsed plan or None, Monday of week 1 or None)."""
    where, args = ("WHERE p.learner_id = ANY(%s)", (learner_ids,)) if learner_ids is not None else ("", ())
    rows = conn.execute(
        "SELECT p.learner_id, p.xmin::text AS row_version, p.start_date,"
        " (SELECT lr.row->>'imported_at' FROM learner_row lr WHERE lr.learner_id = p.learner_id"
        "  AND lr.entity = 'plan' AND NOT lr.deleted LIMIT 1) AS imported_at"
        f" FROM g_plan p {where}", args).fetchall()
    return {r["learner_id"]: (_parsed(conn, r["learner_id"], r["row_version"]),
                              plan_start(r["start_date"], r["imported_at"])) for r in rows}


# -- people ---------------------------------------------------------------------------------------
def learners(conn) -> list[dict]:
    """Active learners, each with `row_version`: the versions (xmin) of their account, g_activity
    and g_plan rows, which change with anything of theirs the cohort shows."""
    return conn.execute(
        "SELECT a.id, a.name, a.email, a.share_notes, a.on_board, act.last_change_at,"
        " a.xmin::text || ':' || coalesce(act.xmin::text, '') || ':' || coalesce(p.xmin::text, '') AS row_version"
        " FROM account a LEFT JOIN g_activity act ON act.learner_id = a.id"
        " LEFT JOIN g_plan p ON p.learner_id = a.id"
        " WHERE a.role = 'learner' AND NOT a.disabled ORDER BY lower(a.name), a.id").fetchall()


def learner(conn, learner_id: int) -> dict | None:
    return conn.execute(
        "SELECT a.*, act.last_change_at, a.xmin::text || ':' || coalesce(act.xmin::text, '') AS row_version"
        " FROM account a LEFT JOIN g_activity act ON act.learner_id = a.id"
        " WHERE a.id = %s AND a.role = 'learner'", (learner_id,)).fetchone()


# -- weeks ----------------------------------------------------------------------------------------
def _weekly_seconds(conn, learner_ids: list[int]) -> dict[int, dict[date, int]]:
    """learner -> Monday -> seconds logged that week. The Monday by date arithmetic from a known
    Monday (2000-01-03): several times cheaper than date_trunc, which goes through timestamps."""
    out: dict[int, dict[date, int]] = {}
    for r in conn.execute(
            "SELECT learner_id, day - (((day - date '2000-01-03') %% 7 + 7) %% 7) AS monday,"
            " sum(seconds)::bigint AS s FROM g_day_total WHERE learner_id = ANY(%s) GROUP BY 1, 2",
            (learner_ids,)):
        out.setdefault(r["learner_id"], {})[r["monday"]] = r["s"]
    return out


def weeks_of(plan: planlib.Plan | None, start: date | None, by_monday: dict[date, int], day: date) -> dict:
    """One learner's weeks: hours logged against the week's budget, and where they are now."""
    if plan is None or start is None or not plan.weeks:
        return {"weeks": [], "current": None, "outside": round(sum(by_monday.values()) / 3600, 2)}
    weeks, inside = [], 0
    for n, week in enumerate(plan.weeks, start=1):
        first, last = progress.week_dates(start, n)
        seconds = by_monday.get(first, 0)
        inside += seconds
        lo, hi = week.hours_min, week.hours_max
        if not lo and plan.commitment and plan.commitment.weekly_min:  # a week without day blocks
            lo, hi = plan.commitment.weekly_min, plan.commitment.weekly_max or plan.commitment.weekly_min
        hours = round(seconds / 3600, 2)
        weeks.append({"number": week.number, "title": week.title, "start": first, "end": last,
                      "hours": hours, "budget_min": lo, "budget_max": hi,
                      "met": bool(lo) and hours >= lo, "future": first > day})
    index = progress.week_index(plan, start, day)
    return {"weeks": weeks, "current": index if 1 <= index <= len(plan.weeks) else None,
            "outside": round((sum(by_monday.values()) - inside) / 3600, 2)}


def cohort(conn, memo: dict | None = None) -> dict:
    """Every learner's weeks, and per week of the plan the cohort's median hours. MEMO (a dict
    the caller keeps) holds each learner's row under its `key` (their row versions and today), so
    after one learner syncs only their row is read again, not the cohort's."""
    memo = {} if memo is None else memo
    day = today()
    people = learners(conn)
    for p in people:
        p["key"] = ("cohort-row", p["id"], p["row_version"], day)
    found = {p["id"]: memo.get(p["key"]) for p in people}
    missing = [lid for lid, row in found.items() if row is None]
    if missing:
        plan_of = plans(conn, missing)
        secs = _weekly_seconds(conn, missing)
        for p in people:
            if found[p["id"]] is None:
                plan, start = plan_of.get(p["id"], (None, None))
                found[p["id"]] = memo[p["key"]] = {
                    **p, "plan_title": plan.title if plan else None, "start": start,
                    **weeks_of(plan, start, secs.get(p["id"], {}), day)}
    rows = [found[p["id"]] for p in people]
    n_weeks = max((len(r["weeks"]) for r in rows), default=0)
    summary = []
    for i in range(n_weeks):
        cells = [r["weeks"][i] for r in rows if len(r["weeks"]) > i and not r["weeks"][i]["future"]]
        hours = sorted(c["hours"] for c in cells)
        summary.append({"number": i + 1, "learners": len(cells),
                        "median": hours[len(hours) // 2] if hours else None,
                        "met": sum(c["met"] for c in cells)})
    return {"learners": rows, "summary": summary, "today": day}


def inactive(conn, days: int) -> list[dict]:
    """Learners with no time logged on the last DAYS days (today included), longest silent first."""
    since = today() - timedelta(days=days - 1)
    rows = conn.execute(
        "SELECT a.id, a.name, a.email, last.day AS last_day, act.last_change_at"
        " FROM account a"
        " LEFT JOIN LATERAL (SELECT max(day) AS day FROM g_day_total t"
        "   WHERE t.learner_id = a.id AND t.seconds > 0) last ON true"
        " LEFT JOIN g_activity act ON act.learner_id = a.id"
        " WHERE a.role = 'learner' AND NOT a.disabled AND (last.day IS NULL OR last.day < %s)"
        " ORDER BY last.day NULLS FIRST, lower(a.name)", (since,)).fetchall()
    for r in rows:
        r["silent_days"] = (today() - r["last_day"]).days if r["last_day"] else None
    return rows


# -- labs -----------------------------------------------------------------------------------------
def lab_rates(conn) -> list[dict]:
    """Per lab: learners who ran its check, who passed it (once is enough: evidence.state_of),
    and the share of check runs that passed."""
    return conn.execute(
        "SELECT lab, count(DISTINCT learner_id) AS learners,"
        " count(DISTINCT learner_id) FILTER (WHERE passed) AS passed_learners,"
        " count(*) AS runs, count(*) FILTER (WHERE passed) AS passed_runs"
        " FROM g_lab_run WHERE kind = 'check' GROUP BY lab ORDER BY lab").fetchall()


def failing_criteria(conn, limit: int = 15, lab: str | None = None) -> list[dict]:
    """The criteria that fail most in checks, by how many learners they failed for."""
    return conn.execute(
        "SELECT r.lab, c->>'name' AS name, count(DISTINCT r.learner_id) AS learners,"
        " count(*) AS failures FROM g_lab_run r,"
        " jsonb_array_elements(CASE jsonb_typeof(r.criteria) WHEN 'array' THEN r.criteria"
        "   ELSE '[]'::jsonb END) c"
        " WHERE r.kind = 'check' AND NOT r.passed AND jsonb_typeof(c) = 'object'"
        " AND (c->'passed') IS DISTINCT FROM 'true'::jsonb AND c ? 'name'"
        " AND (%(lab)s::text IS NULL OR r.lab = %(lab)s)"
        " GROUP BY 1, 2 ORDER BY 3 DESC, 4 DESC, 1, 2 LIMIT %(limit)s",
        {"lab": lab, "limit": limit}).fetchall()


def learner_labs(conn, learner_id: int) -> list[dict]:
    """One learner's labs: the local status rule over their runs, and the last check's criteria."""
    runs = conn.execute(
        "SELECT lab, kind, at, passed, criteria FROM g_lab_run WHERE learner_id = %s"
        " ORDER BY lab, at DESC", (learner_id,)).fetchall()
    by_lab: dict[str, list[dict]] = {}
    for r in runs:
        by_lab.setdefault(r["lab"], []).append(r)
    out = []
    for lab, rs in by_lab.items():
        last = next((r for r in rs if r["kind"] == "check"), None)
        crit = last["criteria"] if last and isinstance(last["criteria"], list) else []
        out.append({"lab": lab, "state": state_of(rs), "runs": len(rs), "last_at": rs[0]["at"],
                    "last_check": last,
                    "failed": [c.get("name") for c in crit if isinstance(c, dict) and not c.get("passed")]})
    return out


# -- one learner ----------------------------------------------------------------------------------
def learner_page(conn, learner_id: int, *, notes: bool) -> dict:
    plan, start = plans(conn, [learner_id]).get(learner_id, (None, None))
    secs = _weekly_seconds(conn, [learner_id]).get(learner_id, {})
    data = weeks_of(plan, start, secs, today())
    total = conn.execute("SELECT coalesce(sum(seconds), 0)::bigint AS s, count(*) AS days,"
                         " max(day) AS last_day FROM g_day_total WHERE learner_id = %s AND seconds > 0",
                         (learner_id,)).fetchone()
    entries = conn.execute(
        "SELECT day, item_id, seconds, note, source FROM g_time_entry WHERE learner_id = %s"
        " ORDER BY day DESC, uid DESC LIMIT %s", (learner_id, RECENT_ENTRIES)).fetchall()
    states = conn.execute("SELECT status, count(*) AS n FROM g_item_state WHERE learner_id = %s"
                          " GROUP BY status", (learner_id,)).fetchall()
    for e in entries:
        item = plan.item(e["item_id"]) if plan and e["item_id"] else None
        e["title"] = item.title if item else None
    note_rows = None
    if notes:
        note_rows = conn.execute("SELECT item_id, text, updated_at FROM g_note WHERE learner_id = %s"
                                 " AND text <> '' ORDER BY updated_at DESC", (learner_id,)).fetchall()
    return {**data, "plan_title": plan.title if plan else None, "start": start,
            "hours_total": round(total["s"] / 3600, 2), "days_logged": total["days"],
            "last_day": total["last_day"], "entries": entries, "labs": learner_labs(conn, learner_id),
            "items": {r["status"]: r["n"] for r in states}, "notes": note_rows}


# -- the board ------------------------------------------------------------------------------------
def board(conn) -> list[dict]:
    """Opt-in learners' best numbers: the transformer lab's lowest val loss (and the training
    seconds it took), and the engine's best output throughput from `z2v compare`."""
    rows = conn.execute(
        "SELECT a.id, a.name,"
        " (SELECT jsonb_build_object('val_loss', r.metrics->'val_loss',"
        "   'seconds', r.metrics->'train_seconds', 'preset', r.metrics->'preset',"
        "   'device', r.metrics->'device', 'at', r.at)"
        "  FROM g_lab_run r WHERE r.learner_id = a.id AND r.lab = 'transformer' AND r.kind = 'run'"
        "  AND jsonb_typeof(r.metrics->'val_loss') = 'number'"
        "  ORDER BY (r.metrics->>'val_loss')::float, r.at LIMIT 1) AS transformer,"
        " (SELECT jsonb_build_object('engine', r.metrics->'engine_output_tok_s',"
        "   'vllm', r.metrics->'vllm_output_tok_s', 'speedup', r.metrics->'speedup_at_max', 'at', r.at)"
        "  FROM g_lab_run r WHERE r.learner_id = a.id AND r.lab = 'vllm' AND r.kind = 'compare'"
        "  ORDER BY r.at DESC LIMIT 1) AS compare"
        " FROM account a WHERE a.role = 'learner' AND a.on_board AND NOT a.disabled").fetchall()
    for r in rows:
        c = r["compare"] or {}
        r["engine_tok_s"] = _best(c.get("engine"))
        r["vllm_tok_s"] = _best(c.get("vllm"))
        r["speedup"] = c.get("speedup") if isinstance(c.get("speedup"), (int, float)) else None
        t = r["transformer"] or {}
        r["val_loss"] = t.get("val_loss")
    rows.sort(key=lambda r: (r["val_loss"] is None, r["val_loss"] or 0, -(r["engine_tok_s"] or 0)))
    return rows


def _best(series) -> float | None:
    nums = [v for v in series if isinstance(v, (int, float))] if isinstance(series, list) else []
    return max(nums) if nums else None
