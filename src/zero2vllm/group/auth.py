"""Accounts and credentials: argon2 password hashes, API tokens stored as sha256 hashes.

(The lead's skeleton: the helper owning accounts extends this with invites, web sessions, CSRF,
login rate limits and role checks.)
"""

from __future__ import annotations

import functools
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import abort, g, request

ROLES = ("admin", "mentor", "learner")
TOKEN_PREFIX = "z2v_"
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_account(conn, email: str, name: str, role: str, password: str) -> int:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    row = conn.execute(
        "INSERT INTO account (email, name, role, password_hash) VALUES (%s, %s, %s, %s) RETURNING id",
        (email.strip().lower(), name, role, hash_password(password))).fetchone()
    return row["id"]


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


def require_token(view):
    """API views: `Authorization: Bearer <token>` of a live token; sets g.account."""
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
