"""Browser sessions, CSRF tokens and login rate limits of the group server.

A session is a random cookie value; the database keeps only its sha256 (`web_session.id_hash`),
so a copy of the database logs nobody in. Each session has its own CSRF token. Before login a
form's CSRF token is an HMAC of a random pre-session cookie under the server's secret key, so
the login and invite forms are protected too and no state is stored for anonymous visitors.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

from flask import Flask, abort, current_app, g, request

from zero2vllm.group import auth

SESSION_COOKIE = "z2v_group_session"
PRE_COOKIE = "z2v_group_pre"
SESSION_DAYS = 14
CSRF_FIELD, CSRF_HEADER = "csrf_token", "X-CSRF-Token"
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# Failed logins within the window that lock out an email, or one remote address (a classroom
# behind one NAT shares an address, hence the larger number).
WINDOW_S, MAX_FAILS_EMAIL, MAX_FAILS_REMOTE = 15 * 60, 5, 20


# -- sessions --------------------------------------------------------------------------------
def start(conn, account_id: int) -> str:
    """A new session for ACCOUNT_ID; returns the cookie value (shown to nobody else)."""
    value = secrets.token_urlsafe(32)
    conn.execute("INSERT INTO web_session (id_hash, account_id, csrf, expires_at)"
                 " VALUES (%s, %s, %s, now() + make_interval(days => %s))",
                 (auth.token_hash(value), account_id, secrets.token_urlsafe(32), SESSION_DAYS))
    return value


def lookup(conn, value: str) -> dict | None:
    """The live account of a session cookie, with the session's `csrf` and `session_hash`."""
    return conn.execute(
        "SELECT a.*, s.csrf, s.id_hash AS session_hash FROM web_session s"
        " JOIN account a ON a.id = s.account_id"
        " WHERE s.id_hash = %s AND s.expires_at > now() AND NOT a.disabled",
        (auth.token_hash(value),)).fetchone()


def end(conn, value: str) -> None:
    conn.execute("DELETE FROM web_session WHERE id_hash = %s OR expires_at < now()",
                 (auth.token_hash(value),))


def secure_cookies() -> bool:
    """Whether cookies get the Secure flag: config Z2V_SECURE_COOKIES True/False, or "auto":
    always, except for plain http on a loopback address (a server tried out on one machine)."""
    setting = current_app.config.get("Z2V_SECURE_COOKIES", "auto")
    if setting != "auto":
        return bool(setting)
    if request.scheme == "https":
        return True
    host = (request.host or "").rsplit(":", 1)[0].strip("[]")
    try:
        return not (host == "localhost" or ipaddress.ip_address(host).is_loopback)
    except ValueError:
        return True


def set_cookie(resp, name: str, value: str, max_age: int | None) -> None:
    resp.set_cookie(name, value, max_age=max_age, httponly=True, samesite="Lax",
                    secure=secure_cookies(), path="/")


# -- CSRF ------------------------------------------------------------------------------------
def _pre_token(pre: str) -> str:
    key = current_app.secret_key
    key = key.encode() if isinstance(key, str) else key
    return hmac.new(key, b"csrf:" + pre.encode(), hashlib.sha256).hexdigest()


def csrf_token() -> str:
    """The token forms must send back: the session's, or before login the pre-session one."""
    account = g.get("web_account")
    if account is not None:
        return account["csrf"]
    pre = request.cookies.get(PRE_COOKIE, "")
    if len(pre) < 32:
        pre = g.get("new_pre_cookie") or secrets.token_urlsafe(32)
        g.new_pre_cookie = pre  # set on the response by install()
    return _pre_token(pre)


def csrf_ok() -> bool:
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    account = g.get("web_account")
    if account is not None and hmac.compare_digest(sent.encode(), account["csrf"].encode()):
        return True
    pre = request.cookies.get(PRE_COOKIE, "")
    return len(pre) >= 32 and hmac.compare_digest(sent.encode(), _pre_token(pre).encode())


def install(app: Flask) -> None:
    """Load the session of every page request, and refuse unsafe page requests without the
    CSRF token. /api/ is exempt: it authenticates by Bearer token only, never by cookie."""
    @app.before_request
    def _load_session():
        g.web_account = None
        if request.path.startswith("/api/") or request.path.startswith("/static/"):
            return
        value = request.cookies.get(SESSION_COOKIE)
        if value:
            g.web_account = lookup(g.db, value)
        if request.method in UNSAFE_METHODS and not csrf_ok():
            abort(403, description="This form's security token is missing or out of date. "
                                   "Reload the page and try again.")

    @app.after_request
    def _set_pre_cookie(resp):
        if g.get("new_pre_cookie"):
            set_cookie(resp, PRE_COOKIE, g.new_pre_cookie, max_age=None)
        return resp

    app.jinja_env.globals["csrf_token"] = csrf_token


# -- login rate limits ------------------------------------------------------------------------
def remote() -> str:
    return request.remote_addr or "unknown"


def retry_after(conn, email: str, where: str) -> int | None:
    """Seconds until EMAIL or WHERE may try again, or None when they may now."""
    window = "AND NOT ok AND at > now() - make_interval(secs => %s)"
    rows = conn.execute(
        "SELECT 'email' AS by, count(*) AS n, extract(epoch FROM now() - min(at)) AS age"
        f" FROM login_attempt WHERE email = %s {window} UNION ALL"
        " SELECT 'remote', count(*), extract(epoch FROM now() - min(at))"
        f" FROM login_attempt WHERE remote = %s {window}",
        (email, WINDOW_S, where, WINDOW_S)).fetchall()
    limits = {"email": MAX_FAILS_EMAIL, "remote": MAX_FAILS_REMOTE}
    waits = [max(1, int(WINDOW_S - float(r["age"])) + 1) for r in rows if r["n"] >= limits[r["by"]]]
    return max(waits) if waits else None


def login(conn, email: str, password: str) -> tuple[dict | None, int | None]:
    """(account, None) for a right password; (None, None) for a wrong one, recorded and
    committed at once so a refusal is counted even though the request answers 4xx; (None,
    seconds) while this email or address is locked out (the password is not even checked)."""
    email, where = email.strip().lower()[:320], remote()
    wait = retry_after(conn, email, where)
    if wait is not None:
        return None, wait
    account = auth.check_password(conn, email, password)
    conn.execute("INSERT INTO login_attempt (email, remote, ok) VALUES (%s, %s, %s)",
                 (email, where, account is not None))
    conn.commit()
    return account, None
