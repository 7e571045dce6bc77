"""Placeholder: replaced by the helper that owns `group/accounts.py`."""

from flask import Blueprint

bp = Blueprint("accounts", __name__)
