"""The group dashboard (/group/): the cohort's weeks, who has gone quiet, lab pass rates and the
criteria that fail most, each learner's page and the opt-in board of lab metrics.

Who sees what (auth.py decides): everyone logged in sees the cohort's summary, the lab rates and
the board (opt-in by definition); a learner sees only their own row and page; mentors and admins
see every learner, and a learner's notes only when they share them.

A page's body is cached under views.data_version (it changes with every sync and every account
change), so a page is computed once per change, not once per request; the frame around it (the
viewer's name, their CSRF token) is rendered for each request and never cached.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

from flask import Blueprint, abort, current_app, g, render_template, request
from markupsafe import Markup

from zero2vllm.group import auth, charts, views

bp = Blueprint("dashboard", __name__, url_prefix="/group")
STAFF = ("admin", "mentor")
MAX_DAYS = 3650
CACHE_SIZE = 512
ROW_CACHE_SIZE = 4096  # learners' cohort rows, their drawings and table rows


class _Bounded(OrderedDict):
    """A dict that forgets its oldest entries beyond SIZE (the cohort's per-learner memo)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        while len(self) > self.size:
            self.popitem(last=False)


def _rows_memo() -> _Bounded:
    return current_app.extensions.setdefault("z2v_dashboard_rows", _Bounded(ROW_CACHE_SIZE))


def _page(title: str, key: tuple, build, version: str | None = None) -> str:
    """The page: BUILD() -> (template, context) makes its body, cached under KEY, the data's
    VERSION (default: views.data_version) and today's date (weeks and "inactive" move with the
    calendar). One thread builds a missing body; the others asking for it meanwhile wait for it
    instead of building it too (a sync empties the cache while 20 clients are reading)."""
    # one cache per app (so per database), shared by the server's threads
    cache, lock = current_app.extensions.setdefault("z2v_dashboard_cache", (OrderedDict(), threading.Lock()))
    key = (*key, version or views.data_version(g.db), views.today())
    with lock:
        entry = cache.get(key)
        if entry is None:
            entry = cache[key] = [threading.Event(), None]
            mine = True
            while len(cache) > CACHE_SIZE:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
            mine = False
    if mine:
        try:
            template, context = build()
            entry[1] = Markup(render_template(template, **context))
        finally:
            entry[0].set()
            if entry[1] is None:  # the build failed: the next request tries again
                with lock:
                    cache.pop(key, None)
    elif not entry[0].wait(30) or entry[1] is None:
        template, context = build()
        entry = [None, Markup(render_template(template, **context))]
    return render_template("group_page.html", title=title, body=entry[1])


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
    staff = g.account["role"] in STAFF
    me = None if staff else g.account["id"]  # a learner's page differs only by their own row

    def build():
        # after one learner syncs, only their row is read and drawn again
        memo = _rows_memo()
        data = views.cohort(g.db, memo)
        rows = data["learners"] if staff else [r for r in data["learners"] if r["id"] == me]
        n_weeks = len(data["summary"])
        row_html = []
        for r in rows:
            key = ("table-row", r["key"], n_weeks)
            html = memo.get(key)
            if html is None:
                html = memo[key] = Markup(render_template("_group_cohort_row.html", r=r, n_weeks=n_weeks))
            row_html.append(html)
        return "group_cohort.html", dict(data=data, row_html=row_html, staff=staff,
                                         chart=charts.cohort_svg(rows, fragments=memo),
                                         levels=charts.LEVEL_COLOURS)
    return _page("Cohort", ("cohort", me), build)


@bp.get("/inactive")
@auth.require_login(*STAFF)
def inactive():
    _no_other_params("days")
    days = _days_param()
    return _page("Inactive learners", ("inactive", days), lambda: (
        "group_inactive.html", dict(days=days, rows=views.inactive(g.db, days), today=views.today())))


@bp.get("/labs")
@auth.require_login()
def labs():
    _no_other_params()

    def build():
        from zero2vllm.labs import all_labs

        titles = {lab_id: lab.title for lab_id, lab in all_labs().items()}
        return "group_labs.html", dict(rates=views.lab_rates(g.db), failing=views.failing_criteria(g.db),
                                       titles=titles)
    return _page("Labs", ("labs",), build)


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

    def build():
        data = views.learner_page(g.db, learner_id, notes=notes)
        return "group_learner.html", dict(person=person, data=data, chart=charts.weeks_svg(data["weeks"]),
                                          show_notes=notes)
    # this page changes only with this learner's own syncs and account
    return _page(person["name"], ("learner", learner_id, notes), build, version=person["row_version"])


@bp.get("/board")
@auth.require_login()
def board():
    _no_other_params()
    return _page("Board", ("board",), lambda: ("group_board.html", dict(rows=views.board(g.db))))
