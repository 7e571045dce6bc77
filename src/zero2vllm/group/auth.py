"""Accounts and credentials: argon2 password hashes, API tokens stored as sha256 hashes, and the
role checks every view uses (`require_token` for the API, `require_login` for pages,
`can_see_learner` / `can_see_notes` for what one account may read of another's).

Web sessions, CSRF and login rate limits are in `sessions.py`; invites in `invites.py`.
"""

from __future__ import annotations

import functools
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import abort, g, redirect, request, url_for

ROLES = ("admin", "mentor", "learner")
STAFF = ("admin", "mentor")  # they see every learner's progress
TOKEN_PREFIX = "z2v_"
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
_hasher = PasswordHasher()  # argon2id with the library's current defaults
# Verified against when an email is unknown, so a wrong email takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def password_problem(password) -> str | None:
    """Why PASSWORD cannot be used, or None."""
    if not isinstance(password, str):
        return "the password must be a string"
    if len(password) < MIN_PASSWORD:
        return f"the password must have at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"the password must have at most {MAX_PASSWORD} characters"
    return None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_account(conn, email: str, name: str, role: str, password: str) -> int:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    row = conn.execute(
        "INSERT INTO account (email, name, role, password_hash) VALUES (%s, %s, %s, %s) RETURNING id",
        (email.strip().lower(), name, role, hash_password(password))).fetchone()
    return row["id"]


def check_password(conn, email: str, password: str) -> dict | None:
    """The live account with this email and password, or None (in the same time either way)."""
    row = conn.execute("SELECT * FROM account WHERE email = %s AND NOT disabled",
                       (email.strip().lower(),)).fetchone()
    if row is None:
        verify_password(_DUMMY_HASH, password)
        return None
    return row if verify_password(row["password_hash"], password) else None


def issue_token(conn, account_id: int, name: str) -> str:
    """A new API token for one account; only its hash is stored, so it is shown once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    conn.execute("INSERT INTO api_token (account_id, token_hash, name) VALUES (%s, %s, %s)",
                 (account_id, token_hash(token), name))
    return token


def token_account(conn, token: str) -> dict | None:
    """The account a live (unrevoked) token belongs to, or None."""
    row = conn.execute(
        "SELECT a.*, t.id AS token_id FROM api_token t JOIN account a ON a.id = t.account_id"
        " WHERE t.token_hash = %s AND t.revoked_at IS NULL AND NOT a.disabled",
        (token_hash(token),)).fetchone()
    if row:
        conn.execute("UPDATE api_token SET last_used_at = now() WHERE id = %s", (row["token_id"],))
    return row


def public(account: dict) -> dict:
    """What the API shows of an account (never its password hash)."""
    return {k: account[k] for k in ("id", "email", "name", "role", "share_notes", "on_board")}


def require_token(view):
    """API views: `Authorization: Bearer <token>` of a live token; sets g.account. Cookies never
    authenticate the API, which is why API views need no CSRF token."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            abort(401, description="send Authorization: Bearer <token> (z2v group join makes one)")
        account = token_account(g.db, token.strip())
        if account is None:
            abort(401, description="this token is unknown or revoked: run z2v group join again")
        g.account = account
        return view(*args, **kwargs)
    return wrapped


def require_login(*roles):
    """Pages: the browser's session must be logged in (else a redirect to the login page, which
    comes back here) and, when ROLES are given, have one of them (else 403); sets g.account.
    Use as `@require_login()`, `@require_login` or `@require_login("admin", "mentor")`."""
    if len(roles) == 1 and callable(roles[0]):
        return require_login()(roles[0])
    for role in roles:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")

    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            account = g.get("web_account")
            if account is None:
                return redirect(url_for("accounts.login", next=request.full_path.rstrip("?")))
            if roles and account["role"] not in roles:
                abort(403, description=f"this page is for {' or '.join(roles)} accounts")
            g.account = account
            return view(*args, **kwargs)
        return wrapped
    return decorate


def can_see_learner(viewer: dict | None, learner_id) -> bool:
    """A learner sees only themself; mentors and admins see every learner."""
    if not viewer:
        return False
    if viewer["role"] in STAFF:
        return True
    try:
        return int(viewer["id"]) == int(learner_id)
    except (TypeError, ValueError):
        return False


def can_see_notes(viewer: dict | None, learner_row: dict | None) -> bool:
    """Private notes: their owner always; mentors and admins only when the learner shares them."""
    if not viewer or not learner_row:
        return False
    if int(viewer["id"]) == int(learner_row["id"]):
        return True
    return viewer["role"] in STAFF and bool(learner_row.get("share_notes"))
