"""Single-use, expiring invites: an admin makes one for a role (and optionally one email); the
person it is for picks a name and a password, and the invite is spent. Only the token's sha256
is stored, so the token is shown once, to the admin who made it."""

from __future__ import annotations

import re
import secrets

from zero2vllm.group import auth

INVITE_PREFIX = "z2vinv_"
MAX_DAYS = 90
EMAIL_RE = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")


class InviteError(ValueError):
    """Why an invite cannot be used (one line, shown to the person holding it)."""


def email_problem(email) -> str | None:
    if not isinstance(email, str) or not EMAIL_RE.fullmatch(email.strip()):
        return "give an email address like name@example.org"
    return None


def create(conn, role: str, *, email: str | None = None, days: int = 7,
           created_by: int | None = None) -> str:
    """A new invite token for ROLE, valid DAYS days; only its hash is stored."""
    if role not in auth.ROLES:
        raise InviteError(f"role must be one of {', '.join(auth.ROLES)}")
    if not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InviteError(f"days must be a whole number from 1 to {MAX_DAYS}")
    if email:
        if email_problem(email):
            raise InviteError(email_problem(email))
        email = email.strip().lower()
    token = INVITE_PREFIX + secrets.token_urlsafe(24)
    conn.execute("INSERT INTO invite (token_hash, role, email, created_by, expires_at)"
                 " VALUES (%s, %s, %s, %s, now() + make_interval(days => %s))",
                 (auth.token_hash(token), role, email or None, created_by, days))
    return token


def peek(conn, token: str) -> dict:
    """The usable invite of TOKEN (to show its role and email), or InviteError."""
    row = conn.execute("SELECT *, expires_at < now() AS expired FROM invite WHERE token_hash = %s",
                       (auth.token_hash(token or ""),)).fetchone()
    _refuse_unusable(row)
    return row


def _refuse_unusable(row) -> None:
    if row is None:
        raise InviteError("this invite is unknown: check you copied all of it, or ask for a new one")
    if row["used_at"] is not None:
        raise InviteError("this invite has been used already (each works once): ask your admin "
                          "for a new one, or log in if it was yours")
    if row["expired"]:
        raise InviteError("this invite has expired: ask your admin for a new one")


def accept(conn, token: str, *, email: str, name: str, password: str) -> int:
    """Spend the invite TOKEN on a new account; returns its id. Raises InviteError for an
    unknown, used or expired invite, another email than the invite's, or bad details."""
    row = conn.execute("SELECT *, expires_at < now() AS expired FROM invite WHERE token_hash = %s"
                       " FOR UPDATE", (auth.token_hash(token or ""),)).fetchone()
    _refuse_unusable(row)  # FOR UPDATE: two people racing with one invite: the second waits, then fails
    if email_problem(email):
        raise InviteError(email_problem(email))
    email = email.strip().lower()
    if row["email"] and row["email"] != email:
        raise InviteError("this invite is for another email address")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InviteError("give a name (1 to 200 characters)")
    if auth.password_problem(password):
        raise InviteError(auth.password_problem(password))
    if conn.execute("SELECT 1 FROM account WHERE email = %s", (email,)).fetchone():
        raise InviteError("an account with this email exists already: log in instead")
    account_id = auth.create_account(conn, email, name.strip(), row["role"], password)
    conn.execute("UPDATE invite SET used_at = now(), used_by = %s WHERE id = %s", (account_id, row["id"]))
    return account_id


def listing(conn) -> list[dict]:
    return conn.execute(
        "SELECT i.id, i.role, i.email, i.created_at, i.expires_at, i.used_at, a.email AS used_by_email,"
        " i.expires_at < now() AS expired FROM invite i LEFT JOIN account a ON a.id = i.used_by"
        " ORDER BY i.created_at DESC LIMIT 200").fetchall()
