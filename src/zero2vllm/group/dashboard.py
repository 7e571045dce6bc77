"""The group dashboard (/group/): the cohort's weeks, who has gone quiet, lab pass rates and the
criteria that fail most, each learner's page and the opt-in board of lab metrics.

Who sees what (auth.py decides): everyone logged in sees the cohort's summary, the lab rates and
the board (opt-in by definition); a learner sees only their own row and page; mentors and admins
see every learner, and a learner's notes only when they share them.
"""

from __future__ import annotations

import re

from flask import Blueprint, abort, g, render_template, request

from zero2vllm.group import auth, charts, views

bp = Blueprint("dashboard", __name__, url_prefix="/group")
STAFF = ("admin", "mentor")
MAX_DAYS = 3650


def _days_param() -> int:
    raw = request.args.get("days", "3")
    # ASCII digits only: int() would also take " 7", "+7", "7_0" and other scripts' digits
    days = int(raw) if re.fullmatch(r"[0-9]{1,6}", raw) else 0
    if not 1 <= days <= MAX_DAYS:
        abort(400, description=f"days must be a whole number from 1 to {MAX_DAYS} "
                               f"(got {raw[:20]!r}), e.g. ?days=7")
    return days


def _no_other_params(*allowed: str) -> None:
    unknown = sorted(set(request.args) - set(allowed))
    if unknown:
        abort(400, description=f"unknown query parameter {unknown[0][:40]!r}"
                               + (f": this page takes {', '.join(allowed)}" if allowed else ""))


@bp.get("/")
@auth.require_login()
def cohort():
    _no_other_params()
    data = views.cohort(g.db)
    staff = g.account["role"] in STAFF
    rows = data["learners"] if staff else [r for r in data["learners"] if r["id"] == g.account["id"]]
    return render_template("group_cohort.html", data=data, rows=rows, staff=staff,
                           chart=charts.cohort_svg(rows), levels=charts.LEVEL_COLOURS)


@bp.get("/inactive")
@auth.require_login(*STAFF)
def inactive():
    _no_other_params("days")
    days = _days_param()
    return render_template("group_inactive.html", days=days, rows=views.inactive(g.db, days),
                           today=views.today())


@bp.get("/labs")
@auth.require_login()
def labs():
    _no_other_params()
    from zero2vllm.labs import all_labs

    titles = {lab_id: lab.title for lab_id, lab in all_labs().items()}
    return render_template("group_labs.html", rates=views.lab_rates(g.db),
                           failing=views.failing_criteria(g.db), titles=titles)


@bp.get("/learner/<int:learner_id>")
@auth.require_login()
def learner(learner_id: int):
    _no_other_params()
    # one answer for "not yours" and "no such learner", so ids reveal nothing
    if not auth.can_see_learner(g.account, learner_id):
        abort(404, description="no such learner page for you")
    person = views.learner(g.db, learner_id)
    if person is None:
        abort(404, description="no such learner page for you")
    notes = auth.can_see_notes(g.account, person)
    data = views.learner_page(g.db, learner_id, notes=notes)
    return render_template("group_learner.html", person=person, data=data,
                           chart=charts.weeks_svg(data["weeks"]), show_notes=notes)


@bp.get("/board")
@auth.require_login()
def board():
    _no_other_params()
    return render_template("group_board.html", rows=views.board(g.db))
