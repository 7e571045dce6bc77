"""The group server's Flask app: one PostgreSQL connection pool, JSON errors under /api/, and
the blueprints of accounts (`accounts`), sync (`sync_api`) and the group dashboard (`dashboard`).
"""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify, request
from psycopg_pool import ConnectionPool
from psycopg.rows import dict_row
from werkzeug.exceptions import HTTPException

from zero2vllm.group import db

log = logging.getLogger("zero2vllm.group")
MAX_BODY_BYTES = 8 * 1024 * 1024


def create_app(db_url: str | None = None, *, secret_key: bytes | None = None, pool_size: int = 8,
               testing: bool = False) -> Flask:
    url = db.database_url(db_url)
    with db.connect(url) as conn:
        db.migrate(conn)
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, TESTING=testing)
    if secret_key:
        app.secret_key = secret_key
    pool = ConnectionPool(url, min_size=1, max_size=pool_size, kwargs={"row_factory": dict_row},
                          open=True)
    app.extensions["z2v_pool"] = pool

    @app.before_request
    def _open_db():
        # One connection and one transaction per request: committed when the view returns
        # normally, rolled back on any error.
        g._db_cm = pool.connection()
        g.db = g._db_cm.__enter__()

    @app.teardown_request
    def _close_db(exc):
        cm = g.pop("_db_cm", None)
        if cm is not None:
            cm.__exit__(type(exc) if exc else None, exc, None)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if request.path.startswith("/api/"):
            return jsonify(error={"code": exc.code, "message": exc.description}), exc.code
        return exc

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
