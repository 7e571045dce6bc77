"""Placeholder: replaced by the helper that owns `group/dashboard.py`."""

from flask import Blueprint

bp = Blueprint("dashboard", __name__)
