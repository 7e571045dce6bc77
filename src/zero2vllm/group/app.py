"""The group server's Flask app: one PostgreSQL connection pool, one transaction per request,
browser sessions with CSRF (sessions.py), security headers, JSON errors under /api/, and the
blueprints of accounts (`accounts`), sync (`sync_api`) and the group dashboard (`dashboard`).
"""

from __future__ import annotations

import logging
import secrets

from flask import Flask, g, jsonify, render_template, request
from psycopg_pool import ConnectionPool
from psycopg.rows import dict_row
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from zero2vllm.group import db, sessions

log = logging.getLogger("zero2vllm.group")
MAX_BODY_BYTES = 8 * 1024 * 1024
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),  # invite links carry a token in the query string
    ("Cross-Origin-Opener-Policy", "same-origin"),
]


class _Rollback(Exception):
    """Handed to the pooled connection's exit to roll back a request that answered 4xx/5xx."""


def create_app(db_url: str | None = None, *, secret_key: bytes | str | None = None,
               pool_size: int = 8, testing: bool = False, secure_cookies="auto",
               trusted_proxies: int = 0) -> Flask:
    """SECRET_KEY signs the pre-login CSRF tokens (random per process when not given; the server
    command keeps one in a file). SECURE_COOKIES: True, False or "auto" (see sessions.py).
    TRUSTED_PROXIES: how many reverse proxies in front set X-Forwarded-For/-Proto/-Host."""
    url = db.database_url(db_url)
    with db.connect(url) as conn:
        db.migrate(conn)
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, TESTING=testing,
                      Z2V_SECURE_COOKIES=secure_cookies, TEMPLATES_AUTO_RELOAD=False)
    app.secret_key = secret_key or secrets.token_bytes(32)
    if trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=trusted_proxies, x_proto=trusted_proxies,
                                x_host=trusted_proxies)
    pool = ConnectionPool(url, min_size=1, max_size=pool_size, kwargs={"row_factory": dict_row},
                          open=True)
    app.extensions["z2v_pool"] = pool

    @app.before_request
    def _open_db():
        # One connection and one transaction per request: committed when the view answers
        # 1xx-3xx, rolled back when it answers 4xx/5xx or raises (so an abort() midway through
        # a push stores nothing). A view that must keep a write on refusal commits it itself.
        g._db_cm = pool.connection()
        g.db = g._db_cm.__enter__()

    sessions.install(app)  # after _open_db: it reads the session from the database

    @app.after_request
    def _headers(resp):
        if resp.status_code >= 400:
            g._db_rollback = True
        for name, value in SECURITY_HEADERS:
            resp.headers.setdefault(name, value)
        if request.scheme == "https":
            resp.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if not request.path.startswith("/static/"):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    @app.teardown_request
    def _close_db(exc):
        cm = g.pop("_db_cm", None)
        if cm is not None:
            if exc is None and g.pop("_db_rollback", False):
                exc = _Rollback()
            cm.__exit__(type(exc) if exc else None, exc, None)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if request.path.startswith("/api/"):
            resp = jsonify(error={"code": exc.code, "message": exc.description})
        else:
            resp = app.make_response((render_template("group_error.html", error=exc), exc.code))
        for name, value in exc.get_headers():
            if name.lower() not in ("content-type", "content-length"):
                resp.headers[name] = value  # Retry-After of a 429, Allow of a 405
        return resp, exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        if request.path.startswith("/api/"):
            return jsonify(error={"code": 500, "message": "internal error (logged on the server)"}), 500
        return "internal error (logged on the server)", 500

    from zero2vllm.group import accounts, dashboard, sync_api

    for module in (accounts, sync_api, dashboard):
        app.register_blueprint(module.bp)
    return app
