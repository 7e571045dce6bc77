"""The dashboard's Time entries page: every entry logged, each with edit and delete.

Before this page the only way to fix one wrong entry was a chain of undos. Edits and deletes go
through `zero2vllm.tracker.actions` (the rules `z2v log` follows: a duration that parses, at most a day,
no future day) and are journalled, so the header's Undo takes them back like any other change.
A refused edit is shown on its row, with what was typed kept.
"""

from __future__ import annotations

from flask import Flask, flash, get_flashed_messages, redirect, render_template, request, url_for

from zero2vllm.tracker import actions
from zero2vllm.tracker.actions import ActionError
from zero2vllm.tracker.durations import format_duration

PAGE_ROWS = 500  # newest first; older ones are a `--week` filter away


def register(app: Flask, store, plan) -> None:
    """Add the routes; `store()` and `plan()` are the app's per-request accessors."""

    def page(week: int | None, row_error: dict | None = None, status: int = 200):
        p = plan()
        ids = None
        if week is not None and p.week(week) is not None:
            ids = [i.id for i in p.week(week).items]
        rows = list(reversed(store().entries(item_ids=ids)))[:PAGE_ROWS]
        titles = {i.id: i.title for i in p.items()}
        return render_template(
            "entries.html", rows=rows, titles=titles, plan=p, week=week, fmt=format_duration,
            row_error=row_error or {}, total=store().count_entries(),
            messages=get_flashed_messages(with_categories=True)), status

    @app.get("/entries")
    def entries():
        return page(request.args.get("week", type=int))

    def back(week):
        return redirect(url_for("entries", week=week) if week else url_for("entries"))

    @app.post("/entries/<int:entry_id>/edit")
    def entry_edit(entry_id: int):
        f = request.form
        week = f.get("week", type=int)
        typed = {"duration": f.get("duration", "")[:100], "day": f.get("day", "")[:20],
                 "note": f.get("note", "")[:2000]}
        try:
            flash(actions.edit_entry(store(), entry_id, f.get("duration", ""), f.get("day", ""),
                                     f.get("note") or None), "ok")
        except ActionError as exc:
            return page(week, {"id": entry_id, "message": str(exc), "typed": typed}, 422)
        return back(week)

    @app.post("/entries/<int:entry_id>/delete")
    def entry_delete(entry_id: int):
        try:
            flash(actions.delete_entry(store(), entry_id), "ok")
        except ActionError as exc:
            flash(str(exc), "error")
        return back(request.form.get("week", type=int))
