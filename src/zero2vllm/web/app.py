"""The dashboard's Flask app: pages over the same store and library calls as the CLI.

Views only fetch data from `zero2vllm.tracker.progress` / `zero2vllm.web.views_data` and render it; every
change goes through `zero2vllm.tracker.actions`, the functions the CLI's commands call too. Safe by default: a CSRF token on
every state-changing request, Host checked against loopback names, Markdown rendered without
raw HTML, and a database error is an error page, never a stack trace.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import sqlite3
import time
from pathlib import Path

from flask import (Flask, Response, abort, flash, g, get_flashed_messages, redirect, render_template,
                   request, send_file, session, url_for)
from markupsafe import Markup, escape
from werkzeug.exceptions import HTTPException

from zero2vllm.tracker import actions
from zero2vllm.tracker import progress
from zero2vllm.web import views_data
from zero2vllm.tracker.actions import ActionError
from zero2vllm.tracker.plan import PlanError
from zero2vllm.tracker.store import Store, StoreError
from zero2vllm.web import charts
from zero2vllm.web.cache import PageCache

log = logging.getLogger("zero2vllm.web")

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_PLACEHOLDER = "__Z2V_CSRF_TOKEN__"  # cached pages carry this; each response gets its own token
CSRF_PLACEHOLDER_B = CSRF_PLACEHOLDER.encode()
LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]
SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' "
                                "'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; form-action 'self'"),
]
MAX_PLAN_BYTES = 2 * 1024 * 1024


class StoredPlanError(Exception):
    """The plan in the store no longer parses (edited by hand, or written by a newer version)."""


def _markdown():
    from markdown_it import MarkdownIt

    # html=False: raw HTML in a note (e.g. <script>) is shown as text, never run.
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])


def create_app(db_path: Path | str | None = None, *, data_root: Path | str | None = None,
               trusted_hosts: list[str] | None = None, secret_key: str | None = None,
               cache: bool = True) -> Flask:
    """The app for the store at DB_PATH (default: the CLI's). Artifact files are served only
    from inside DATA_ROOT (default: the data directory). `trusted_hosts=None` accepts only
    loopback names in the Host header (against DNS rebinding); pass [] to accept any."""
    from zero2vllm.paths import data_dir, db_path as default_db

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key or secrets.token_hex(32),  # per process: a restart asks for a reload
        SESSION_COOKIE_NAME="z2v_session",
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_HTTPONLY=True,
        MAX_CONTENT_LENGTH=MAX_PLAN_BYTES + 64 * 1024,
        TRUSTED_HOSTS=LOOPBACK_NAMES if trusted_hosts is None else (trusted_hosts or None),
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.config["Z2V_DB"] = Path(db_path) if db_path else default_db()
    app.config["Z2V_DATA_ROOT"] = Path(data_root) if data_root else data_dir()
    md = _markdown()
    pages = PageCache(app.config["Z2V_DB"]) if cache else None
    app.extensions["z2v_page_cache"] = pages

    # -- per-request store and plan ----------------------------------------------------------
    def store() -> Store:
        if "store" not in g:
            g.store = Store.open(app.config["Z2V_DB"])
        return g.store

    def plan():
        if "plan" not in g:
            try:
                g.plan = views_data.current_plan(store())
            except PlanError as exc:
                raise StoredPlanError(str(exc)) from None
        return g.plan

    @app.teardown_appcontext
    def close_store(_exc) -> None:
        s = g.pop("store", None)
        if s is not None:
            s.close()

    # -- CSRF --------------------------------------------------------------------------------
    def csrf_token() -> str:
        token = session.get("csrf")
        if not token:
            token = session["csrf"] = secrets.token_urlsafe(32)
        return token

    @app.before_request
    def check_csrf() -> None:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return
        sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
        want = session.get("csrf") or ""
        if not want or not hmac.compare_digest(sent.encode(), want.encode()):
            abort(403, description="This form's security token is missing or out of date "
                                   "(the dashboard may have restarted). Reload the page and try again.")

    @app.after_request
    def security_headers(resp: Response) -> Response:
        if resp.mimetype == "text/html" and not resp.direct_passthrough and not g.get("csrf_filled"):
            # pages are rendered with a placeholder (so a cached page serves every session);
            # each response gets the token of its own session
            body = resp.get_data()
            if CSRF_PLACEHOLDER_B in body:
                resp.set_data(body.replace(CSRF_PLACEHOLDER_B, csrf_token().encode()))
        for name, value in SECURITY_HEADERS:
            resp.headers.setdefault(name, value)
        return resp

    @app.context_processor
    def common() -> dict:
        last = None
        if "store" in g:
            try:
                last = g.store.last_change()
            except sqlite3.Error:  # rendering the database's own error page
                pass
        return {"csrf": CSRF_PLACEHOLDER, "last_change": last, "nav_week": g.get("nav_week")}

    @app.template_filter("md")
    def render_markdown(text: str | None) -> Markup:
        return Markup(md.render(text or ""))

    @app.template_filter("hours")
    def hours(h: float | None) -> str:
        return "-" if h is None else f"{h:.1f}h"

    @app.template_filter("budget")
    def budget(pair) -> str:
        lo, hi = pair
        if lo is None:
            return "?"
        return f"{lo:g}h" if hi in (None, lo) else f"{lo:g}-{hi:g}h"

    @app.template_filter("duration")
    def duration(seconds: float | None) -> str:
        from zero2vllm.tracker.durations import format_duration

        return format_duration(seconds or 0)

    def is_htmx() -> bool:
        return request.headers.get("HX-Request") == "true"

    # -- overview ----------------------------------------------------------------------------
    @app.get("/")
    def overview():
        at = progress.now()

        def render() -> list[bytes]:
            p, s = plan(), store()
            st = progress.status(s, plan=p, at=at)
            today = progress.local_day(at)
            by_day = s.seconds_by_day()  # one query shared by the calendar, streaks and burn-up
            cal = views_data.calendar(s, p, today, by_day=by_day)
            html = render_template(
                "overview.html", st=st, plan=p, cal=cal, streaks=cal["streaks"],
                cards_due=views_data.cards_due(s, p, at),
                burnup=charts.burnup_svg(views_data.burnup(s, p, today, by_day=by_day)),
                heatmap=charts.heatmap_svg(cal), heat_colours=charts.HEAT_COLOURS,
                messages=get_flashed_messages(with_categories=True))
            return html.encode("utf-8").split(CSRF_PLACEHOLDER_B)

        if pages is None or session.get("_flashes"):  # a message to show once: not cacheable
            parts = render()
        else:
            # the page shows minutes (timer, today's date), so it is kept for one minute at most
            parts = pages.page("overview", at.strftime("%Y-%m-%dT%H:%M"), render)
        g.csrf_filled = True
        return Response(csrf_token().encode().join(parts), mimetype="text/html")

    # -- a week ------------------------------------------------------------------------------
    @app.get("/week/")
    @app.get("/week/<int:number>")
    def week(number: int | None = None):
        try:
            view = views_data.week_view(store(), plan(), number)
        except ActionError as exc:
            abort(404, description=str(exc))
        g.nav_week = view["week"].number
        return render_template("week.html", v=view, plan=plan(), now=progress.now(),
                               messages=get_flashed_messages(with_categories=True))

    def after_change(item_id: str | None, message: str, ok: bool = True):
        """htmx: the week's checklist, re-rendered with the message; a plain form: back to it."""
        p = plan()
        item = p.item(item_id) if item_id else None
        number = item.week if item else request.form.get("week", type=int)
        if is_htmx():
            view = views_data.week_view(store(), p, number)
            return render_template("_checklist.html", v=view, plan=p, now=progress.now(), oob=True,
                                   messages=[("ok" if ok else "error", message)])
        flash(message, "ok" if ok else "error")
        return redirect(url_for("week", number=number) if number else url_for("overview"))

    def act(item_id: str | None, func, *args, **kwargs):
        try:
            return after_change(item_id, func(*args, **kwargs))
        except ActionError as exc:
            return after_change(item_id, str(exc), ok=False)

    # item ids come from the pages themselves: exact=True, never a fuzzy match on a stale id
    @app.post("/item/<item_id>/status")
    def item_status(item_id: str):
        return act(item_id, actions.set_status, store(), plan(), item_id, request.form.get("status", ""),
                   exact=True)

    @app.post("/item/<item_id>/log")
    def item_log(item_id: str):
        f = request.form
        return act(item_id, actions.log_time, store(), plan(), item_id, f.get("duration", ""),
                   f.get("day") or None, f.get("note") or None, exact=True)

    @app.post("/item/<item_id>/start")
    def item_start(item_id: str):
        return act(item_id, actions.start_timer, store(), plan(), item_id, exact=True)

    @app.post("/timer/stop")
    def timer_stop():
        timer = store().timer()
        item_id = timer.item_id if timer and plan().item(timer.item_id) else None
        return act(item_id, actions.stop_timer, store())

    @app.post("/item/<item_id>/note")
    def item_note(item_id: str):
        return act(item_id, actions.save_note, store(), plan(), item_id, request.form.get("text", ""),
                   exact=True)

    @app.post("/undo")
    def undo():
        try:
            flash(actions.undo(store()), "ok")
        except ActionError as exc:
            flash(str(exc), "error")
        nxt = request.form.get("next") or "/"
        local = nxt.startswith("/") and not nxt.startswith(("//", "/\\"))  # no open redirect
        return redirect(nxt if local else "/")

    # -- concept review: `z2v review` in the page ---------------------------------------------
    def review_page(week: int | None, reveal: str | None = None, messages=None, status: int = 200):
        if not views_data.review_installed():
            return render_template("review.html", missing=True, messages=messages), status
        try:
            view = views_data.review_view(store(), plan(), progress.now(), week=week, reveal=reveal)
        except ActionError as exc:
            abort(404, description=str(exc))
        template = "_review.html" if is_htmx() else "review.html"
        return render_template(template, r=view, plan=plan(), shown_ms=int(time.time() * 1000),
                               messages=messages if messages is not None
                               else get_flashed_messages(with_categories=True)), status

    @app.get("/review")
    def review_session():
        """The next due card; `?reveal=ID` shows its answer and the rating buttons."""
        return review_page(request.args.get("week", type=int), request.args.get("reveal") or None)

    @app.post("/review/rate")
    def review_rate():
        """Rate the card the page showed with `review.rate`, as `z2v review` does; then the next
        card. Only a card due now is rated: a second click, or a page left open while the card
        was rated elsewhere, must not move its schedule again."""
        from zero2vllm.tracker import review

        f = request.form
        card_id, week = f.get("card", ""), f.get("week", type=int)
        at = progress.now()
        try:
            rating = review.parse_rating(f.get("rating", ""))
            card = next((c for c in review.all_cards(store(), plan(), at) if c.id == card_id), None)
            if card is not None and card.available and card.due > review.utc(at):
                raise review.ReviewError(
                    f"{card_id} is not due until {card.due.astimezone():%Y-%m-%d %H:%M} "
                    f"({review.human_delta(card.due - review.utc(at))}): it was rated already")
            shown = f.get("shown", type=int)
            elapsed = int(time.time() * 1000) - shown if shown else None
            # unknown ids and cards of weeks not started are refused by review.rate, in the CLI's words
            rated = review.rate(store(), card_id, rating, at, plan=plan(),
                                duration_ms=elapsed if elapsed is not None and 0 <= elapsed < 3_600_000 else None)
            due_at = rated.card.due.astimezone()
            message, ok = (f"{card_id}: {review.RATINGS[rating]}, next {review.human_delta(rated.interval)} "
                           f"({due_at:%Y-%m-%d %H:%M}), stability {rated.card.stability:.2f} d."), True
        except review.ReviewError as exc:
            message, ok = str(exc), False
        if is_htmx():
            return review_page(week, messages=[("ok" if ok else "error", message)])
        flash(message, "ok" if ok else "error")
        return redirect(url_for("review_session", week=week))

    @app.get("/favicon.ico")
    def favicon():
        return "", 204

    # -- labs --------------------------------------------------------------------------------
    @app.get("/labs")
    def labs():
        try:
            p = plan()
        except StoredPlanError:
            p = None
        rows = views_data.labs_view(store(), p)
        for lab in rows:
            for run in lab["runs"]:
                run["charts"] = [charts.line_svg(s) for s in views_data.numeric_series(run["metrics"])]
                run["files"] = [{"index": i, "name": Path(a).name, "path": a,
                                 "served": views_data.inside(Path(a), app.config["Z2V_DATA_ROOT"]),
                                 "image": Path(a).suffix.lower() in (".png", ".svg", ".jpg", ".jpeg")}
                                for i, a in enumerate(run["artifacts"])]
                run["scalars"] = {k: v for k, v in run["metrics"].items()
                                  if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
        return render_template("labs.html", labs=rows)

    @app.get("/labs/run/<int:run_id>/artifact/<int:index>")
    def artifact(run_id: int, index: int):
        try:
            path = views_data.artifact_path(store(), run_id, index, app.config["Z2V_DATA_ROOT"])
        except PermissionError as exc:
            abort(403, description=str(exc))
        except FileNotFoundError as exc:
            abort(404, description=str(exc))
        mimetype = "text/plain" if path.suffix.lower() in (".csv", ".json", ".txt", ".log") else None
        return send_file(path, mimetype=mimetype, max_age=0)

    # -- plan --------------------------------------------------------------------------------
    def plan_page(status: int = 200, **extra):
        p, problem = None, None
        try:
            p = plan()
        except StoredPlanError as exc:
            problem = str(exc)
        row = store().get_plan()
        return render_template("plan.html", plan=p, row=row, problem=problem,
                               start=progress.start_date(store()) if row else None,
                               messages=get_flashed_messages(with_categories=True), **extra), status

    @app.get("/plan")
    def plan_view():
        return plan_page()

    @app.post("/plan/import")
    def plan_import():
        upload = request.files.get("file")
        text = request.form.get("text", "")
        if upload and upload.filename:
            data, name = upload.read(MAX_PLAN_BYTES + 1), upload.filename
        else:
            data, name = text.encode("utf-8"), request.form.get("name") or "pasted text"
        if len(data) > MAX_PLAN_BYTES:
            return plan_page(413, import_error=f"{name}: the plan is over {MAX_PLAN_BYTES // 1024} KiB; "
                                               "is this the right file?", pasted=text)
        try:
            _, lines = actions.import_plan_text(store(), data, name)
        except PlanError as exc:  # the CLI's message: "NAME: line N: what ('the line')"
            return plan_page(422, import_error=f"{name}: {exc}", error_line=exc.line_no, pasted=text)
        g.pop("plan", None)
        for line in lines:
            flash(line, "ok")
        return redirect(url_for("plan_view"))

    @app.post("/plan/start")
    def plan_start():
        try:
            flash(actions.set_start_date(store(), request.form.get("day", "")), "ok")
        except ActionError as exc:
            flash(str(exc), "error")
        return redirect(url_for("plan_view"))

    @app.get("/plan/export")
    def plan_export():
        text = progress.export_text(store(), plan())
        resp = Response(text, mimetype="text/plain; charset=utf-8")
        if request.args.get("download"):
            resp.headers["Content-Disposition"] = "attachment; filename=plan.txt"
        return resp

    # -- engine trace: `z2v engine trace` drawn (web/engine_trace.py) -------------------------
    from zero2vllm.web import engine_trace

    engine_trace.register(app)

    # -- errors: a page that says what happened, never a stack trace --------------------------
    def error_page(status: int, title: str, message: str, hint: str | None = None):
        if is_htmx():  # a message above the page; what was on screen stays
            html = render_template("_error_box.html", title=title, message=message, hint=hint)
            return html, status, {"HX-Retarget": "#htmx-messages", "HX-Reswap": "innerHTML"}
        try:
            return render_template("error.html", title=title, message=message, hint=hint,
                                   status=status), status
        except Exception:  # e.g. a refused Host header: no URLs can be built for the page
            return Response(f"<!doctype html><title>{escape(title)}</title><h1>{escape(title)}</h1>"
                            f"<p>{escape(message)}</p>", status=status, mimetype="text/html")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return error_page(exc.code or 500, f"{exc.code} {exc.name}", exc.description or "")

    @app.errorhandler(StoredPlanError)
    def bad_stored_plan(exc: StoredPlanError):
        return error_page(500, "The stored plan cannot be read", str(exc),
                          "Import a fixed plan on the Plan page (or `z2v plan import FILE`).")

    @app.errorhandler(StoreError)
    @app.errorhandler(sqlite3.Error)
    def db_error(exc: Exception):
        log.error("database error: %s", exc)
        return error_page(503, "The database cannot be used", str(exc),
                          f"Database file: {app.config['Z2V_DB']}. Check that it is a zero2vllm "
                          "database and not locked by a stuck process, then reload.")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error")
        return error_page(500, "Something went wrong", f"{type(exc).__name__}: {exc}",
                          "The details are in the terminal running `z2v serve dashboard`.")

    if pages is not None:
        app.wsgi_app = CachedOverview(app, app.wsgi_app, pages)
    return app


class CachedOverview:
    """Serves GET / straight from the page cache, before Flask, when everything Flask would do
    is already known: the Host is trusted, the browser has a session with its CSRF token and no
    message waiting, and the database has not changed this minute. Anything else (first
    visit, a change, another path) goes through Flask as usual. Half the cost of a cached hit
    was Flask's own request handling; this is what keeps the overview fast under load."""

    def __init__(self, app: Flask, wsgi_app, pages: PageCache):
        self.wsgi_app, self.pages = wsgi_app, pages
        self.trusted = app.config["TRUSTED_HOSTS"]
        self.cookie = app.config["SESSION_COOKIE_NAME"]
        self.serializer = app.session_interface.get_signing_serializer(app)
        self.max_age = int(app.permanent_session_lifetime.total_seconds())
        self._verified: dict[str, tuple[str, float]] = {}

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "GET" and environ.get("PATH_INFO") == "/" \
                and not environ.get("QUERY_STRING"):
            parts = self._cached(environ)
            if parts is not None:
                token, parts = parts
                body = token.encode().join(parts)
                start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                          ("Content-Length", str(len(body))), ("Vary", "Cookie")]
                               + SECURITY_HEADERS)
                return [body]
        return self.wsgi_app(environ, start_response)

    def _cached(self, environ):
        from werkzeug.http import parse_cookie

        host = environ.get("HTTP_HOST", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if self.trusted and name not in self.trusted:
            return None
        raw = parse_cookie(environ.get("HTTP_COOKIE", "")).get(self.cookie)
        if not raw:
            return None
        token = self._token_of(raw)
        if token is None:
            return None
        parts = self.pages.peek("overview", progress.now().strftime("%Y-%m-%dT%H:%M"))
        return (token, parts) if parts is not None else None

    def _token_of(self, raw: str) -> str | None:
        """The CSRF token in a session cookie with no message waiting, else None. Checking the
        signature is most of a hit's cost, so a verified cookie is remembered for a minute
        (the same bytes verify the same way; the minute bounds the 31-day expiry check)."""
        now = time.monotonic()
        known = self._verified.get(raw)
        if known is not None and now - known[1] < 60:
            return known[0]
        try:
            data = self.serializer.loads(raw, max_age=self.max_age)
        except Exception:  # a bad or expired cookie: Flask starts a new session
            return None
        token = data.get("csrf") if not data.get("_flashes") else None
        if token:
            if len(self._verified) > 256:
                self._verified.clear()
            self._verified[raw] = (token, now)
        return token
