"""The weekly report's numbers: hours against the commitment, items done and open, lab results
with their numbers, concepts due and their retention.

`build()` gathers them as plain data; `zero2vllm.web.report.render()` turns them into a
self-contained Markdown, HTML or PNG file with charts (matplotlib stays out of the tracker).

Definitions:
- Hours this week: time entries whose day falls in the week's seven days, on any item.
- Commitment: the plan's "Time commitment" per week; budget: the sum of the week's day blocks.
- Planned per day: each block's lower budget spread over its days (as `z2v status`).
- Lab results: runs of the week's labs, runs that name the week (summary checks), and any run
  made during the week's days.
- Retention: FSRS retrievability, the predicted chance of recalling a card now.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from zero2vllm.tracker import progress
from zero2vllm.tracker.plan import Plan
from zero2vllm.tracker.store import Store

class ReportError(ValueError):
    pass


# -- the numbers -------------------------------------------------------------------------------------
def _local_day(at: str):
    return progress.local_day(datetime.fromisoformat(at))


def build(store: Store, plan: Plan, week_number: int, now: datetime,
          week_labs: frozenset[str] = frozenset()) -> dict:
    """The week's numbers; `week_labs` are the ids of the labs that belong to the week."""
    from zero2vllm.tracker import review

    week = plan.week(week_number)
    if week is None:
        have = ", ".join(str(w.number) for w in plan.weeks)
        raise ReportError(f"there is no week {week_number}; the plan has weeks {have}")
    index = plan.weeks.index(week) + 1
    start = progress.start_date(store)
    first, last = progress.week_dates(start, index)
    today = progress.local_day(now)

    prog = progress.progress(store, plan)
    notes = store.notes()
    by_day = store.seconds_by_day(first.isoformat(), last.isoformat())
    planned = progress.planned_hours_by_day(plan, start)
    days = [first + timedelta(days=i) for i in range(7)]
    in_week = store.seconds_by_item_between(first.isoformat(), last.isoformat())
    c = plan.commitment

    items = []
    for item in week.items:
        p = prog[item.id]
        items.append({"id": item.id, "kind": item.kind, "label": item.label, "title": item.title,
                      "status": p.status, "hours": round(p.seconds / 3600, 2), "note": item.id in notes,
                      "draft": item.draft})

    labs = week_labs
    runs = []
    for r in store.lab_runs():
        day = _local_day(r["at"])
        metrics = r["metrics"] if isinstance(r["metrics"], dict) else {}
        if r["lab"] in labs or metrics.get("week") == week.number or first <= day <= last:
            if metrics.get("week") not in (None, week.number):
                continue  # a summary of another week, checked during this one
            runs.append({
                "lab": r["lab"], "kind": r["kind"], "at": r["at"], "passed": r["passed"],
                "criteria_passed": sum(1 for x in r["criteria"] if x.get("passed")),
                "criteria": len(r["criteria"]), "duration_s": r["duration_s"], "metrics": metrics,
                "failed": [x["name"] for x in r["criteria"] if not x.get("passed")],
            })

    cards = review.all_cards(store, plan, now, week=week.number)
    everything = review.all_cards(store, plan, now)
    st = review.stats(store, plan, now)
    week_reviews = [r for r in store.reviews() if first <= _local_day(r["at"]) <= last]
    reviewed = [x for x in cards if x.retrievability is not None]
    return {
        "generated_at": now.isoformat(timespec="seconds"),
        "today": today.isoformat(),
        "plan": plan.title,
        "week": {"number": week.number, "title": week.title, "goal": week.goal, "draft": week.draft,
                 "start": first.isoformat(), "end": last.isoformat(),
                 "when": "future" if today < first else "past" if today > last else "current"},
        "hours": {
            "logged": round(sum(by_day.values()) / 3600, 2),
            "on_week_items": round(sum(prog[i.id].seconds for i in week.items) / 3600, 2),
            "commitment_min": c.weekly_min if c else None, "commitment_max": c.weekly_max if c else None,
            "budget_min": week.hours_min, "budget_max": week.hours_max,
            "by_day": [{"day": d.isoformat(), "logged": round(by_day.get(d.isoformat(), 0) / 3600, 2),
                        "planned": round(planned.get(d, 0.0), 2)} for d in days],
            "by_item": sorted(({"item": k, "hours": round(v / 3600, 2)} for k, v in in_week.items()),
                              key=lambda x: -x["hours"]),
        },
        "items": items,
        "items_done": sum(i["status"] == "done" for i in items),
        "items_skipped": sum(i["status"] == "skipped" for i in items),
        "items_open": sum(i["status"] in ("todo", "in_progress") for i in items),
        "labs": runs,
        "cards": [x.to_dict() for x in cards],
        "retention": {
            "week_mean": sum(x.retrievability for x in reviewed) / len(reviewed) if reviewed else None,
            "week_reviewed": len(reviewed),
            "all_mean": st["mean_retrievability"], "all_reviewed": st["reviewed_cards"],
            "target": review.DESIRED_RETENTION,
        },
        "review": {
            "due_now": st["due"], "held": st["held"], "next_due": st["next_due"],
            "due_within_week": st["due_within_week"],
            "reviews_in_week": len(week_reviews),
            "ratings_in_week": {name: sum(r["rating"] == k for r in week_reviews)
                                for k, name in review.RATINGS.items()},
            "forecast": [{"day": d.isoformat(), "cards": n} for d, n in review.forecast(everything, now)],
        },
    }
