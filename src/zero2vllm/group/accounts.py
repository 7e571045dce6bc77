"""Accounts on the group server: the login, logout, invite, settings and token pages, and the
API the CLI uses to get a token (`POST /api/v1/tokens`), see who it is (`GET /api/v1/me`) and
list or revoke its tokens."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, g, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import TooManyRequests

from zero2vllm.group import auth, invites, sessions

bp = Blueprint("accounts", __name__)
HOME = "/group/"
MAX_NAME = 200


def safe_next(target: str | None) -> str:
    """TARGET if it is a path on this site, else the group's home: no scheme, no host, no "//",
    no backslashes or control characters (which browsers drop or read as /)."""
    if not target or any(ord(c) < 0x21 or ord(c) == 0x7F or c == "\\" for c in target):
        return HOME
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return HOME
    return target


def _logged_in(account_id: int, target: str):
    old = request.cookies.get(sessions.SESSION_COOKIE)
    if old:
        sessions.end(g.db, old)  # a new session value on every login: no session fixation
    resp = redirect(safe_next(target), code=303)
    sessions.set_cookie(resp, sessions.SESSION_COOKIE, sessions.start(g.db, account_id),
                        max_age=sessions.SESSION_DAYS * 86400)
    return resp


def _too_many(wait: int):
    return TooManyRequests(f"too many failed logins: try again in {wait // 60 + 1} minutes",
                           retry_after=wait)


# -- pages ------------------------------------------------------------------------------------
@bp.route("/group/login", methods=["GET", "POST"])
def login():
    target = request.values.get("next", "")
    if request.method == "GET":
        return render_template("group_login.html", next=target, email="", error=None)
    email, password = request.form.get("email", ""), request.form.get("password", "")
    account, wait = sessions.login(g.db, email, password)
    if wait is not None:
        raise _too_many(wait)
    if account is None:
        return render_template("group_login.html", next=target, email=email,
                               error="That email and password do not match an account."), 401
    return _logged_in(account["id"], target)


@bp.post("/group/logout")
def logout():
    value = request.cookies.get(sessions.SESSION_COOKIE)
    if value:
        sessions.end(g.db, value)
    resp = redirect(url_for("accounts.login"), code=303)
    resp.delete_cookie(sessions.SESSION_COOKIE, path="/")
    return resp


@bp.route("/group/join", methods=["GET", "POST"])
def join():
    token = request.values.get("invite", "").strip()
    try:
        invite = invites.peek(g.db, token)
    except invites.InviteError as exc:
        return render_template("group_join.html", invite=None, token="", error=str(exc), form={}), 410
    if request.method == "GET":
        return render_template("group_join.html", invite=invite, token=token, error=None, form={})
    form = {k: request.form.get(k, "") for k in ("email", "name", "password")}
    try:
        account_id = invites.accept(g.db, token, email=invite["email"] or form["email"],
                                    name=form["name"], password=form["password"])
    except invites.InviteError as exc:
        return render_template("group_join.html", invite=invite, token=token, error=str(exc),
                               form=form), 400
    return _logged_in(account_id, HOME)


@bp.route("/group/admin/invites", methods=["GET", "POST"])
@auth.require_login("admin")
def admin_invites():
    made = error = None
    if request.method == "POST":
        try:
            days = int(request.form.get("days", "7"))
            token = invites.create(g.db, request.form.get("role", ""),
                                   email=request.form.get("email", "").strip() or None,
                                   days=days, created_by=g.account["id"])
            made = {"token": token, "url": f"{request.host_url}group/join?invite={token}"}
        except ValueError as exc:  # InviteError, or days that are not a number
            error = str(exc) if isinstance(exc, invites.InviteError) else "days must be a number"
    return render_template("group_invites.html", made=made, error=error, roles=auth.ROLES,
                           invites=invites.listing(g.db)), 400 if error else 200


@bp.route("/group/settings", methods=["GET", "POST"])
@auth.require_login()
def settings():
    saved = False
    if request.method == "POST":
        g.account = g.db.execute(
            "UPDATE account SET share_notes = %s, on_board = %s WHERE id = %s RETURNING *",
            (request.form.get("share_notes") == "on", request.form.get("on_board") == "on",
             g.account["id"])).fetchone()
        saved = True
    return render_template("group_settings.html", me=g.account, saved=saved)


def _tokens(account_id: int) -> list[dict]:
    return g.db.execute("SELECT id, name, created_at, last_used_at, revoked_at FROM api_token"
                        " WHERE account_id = %s ORDER BY created_at DESC, id DESC",
                        (account_id,)).fetchall()


def _revoke(account_id: int, token_id: int) -> bool:
    """Revoke one of ACCOUNT_ID's own tokens; False when it has no such token."""
    row = g.db.execute("UPDATE api_token SET revoked_at = coalesce(revoked_at, now())"
                       " WHERE id = %s AND account_id = %s RETURNING id",
                       (token_id, account_id)).fetchone()
    return row is not None


@bp.get("/group/tokens")
@auth.require_login()
def tokens_page():
    return render_template("group_tokens.html", tokens=_tokens(g.account["id"]))


@bp.post("/group/tokens/<int:token_id>/revoke")
@auth.require_login()
def revoke_page(token_id: int):
    if not _revoke(g.account["id"], token_id):
        abort(404, description="you have no token with this id")
    return redirect(url_for("accounts.tokens_page"), code=303)


# -- API --------------------------------------------------------------------------------------
def _body(*required: str) -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, description="send a JSON object (Content-Type: application/json)")
    for key in required:
        if not isinstance(body.get(key), str) or not body[key]:
            abort(400, description=f"{key!r} must be a non-empty string")
    return body


@bp.post("/api/v1/tokens")
def api_new_token():
    """{email, password, name} -> a token for that account; or {invite, email, name, password,
    token_name} -> a new account from the invite, and a token for it."""
    body = _body("email", "password")
    if "invite" in body:
        body = _body("invite", "email", "name", "password")
        token_name = body.get("token_name", "z2v")
        try:
            account_id = invites.accept(g.db, body["invite"], email=body["email"],
                                        name=body["name"], password=body["password"])
        except invites.InviteError as exc:
            abort(400, description=str(exc))
        account = g.db.execute("SELECT * FROM account WHERE id = %s", (account_id,)).fetchone()
    else:
        token_name = body.get("name", "z2v")
        account, wait = sessions.login(g.db, body["email"], body["password"])
        if wait is not None:
            raise _too_many(wait)
        if account is None:
            abort(401, description="that email and password do not match an account")
    if not isinstance(token_name, str) or not 1 <= len(token_name.strip()) <= MAX_NAME:
        abort(400, description=f"the token's name must be a string of 1 to {MAX_NAME} characters")
    token = auth.issue_token(g.db, account["id"], token_name.strip())
    return jsonify(token=token, learner=auth.public(account)), 201


@bp.get("/api/v1/me")
@auth.require_token
def api_me():
    return jsonify(auth.public(g.account))


@bp.get("/api/v1/tokens")
@auth.require_token
def api_tokens():
    rows = _tokens(g.account["id"])
    for row in rows:
        row["current"] = row["id"] == g.account["token_id"]
        for key in ("created_at", "last_used_at", "revoked_at"):
            row[key] = row[key].isoformat() if row[key] else None
    return jsonify(tokens=rows)


@bp.delete("/api/v1/tokens/<int:token_id>")
@auth.require_token
def api_revoke(token_id: int):
    if not _revoke(g.account["id"], token_id):
        abort(404, description="you have no token with this id")
    return jsonify(revoked=token_id)
