"""Locked predictions: the salted hash a guess is kept as until a check reveals it. The rule is
here, used by both sides: `z2v contrib predict` locks (tracker/contrib_settings.py stores the
hash), the check process tests candidates against it, and the parent re-tests a revealed answer
before storing it."""

from __future__ import annotations

import hashlib
import secrets


def normalise(answer: str) -> str:
    """Predictions compare without case or surrounding/repeated spaces."""
    return " ".join(answer.split()).lower()


def digest(salt: str, answer: str) -> str:
    return hashlib.sha256((salt + "\0" + normalise(answer)).encode()).hexdigest()


def lock(answer: str) -> tuple[str, str]:
    """(salt, digest) for ANSWER: what is stored instead of the answer."""
    salt = secrets.token_hex(8)
    return salt, digest(salt, answer)


def matches(row: dict, answer: str) -> bool:
    """Whether ANSWER is what the locked prediction ROW ({"salt", "digest"}) hashed."""
    return digest(row["salt"], answer) == row["digest"]
