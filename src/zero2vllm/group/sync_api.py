"""Placeholder: replaced by the helper that owns `group/sync_api.py`."""

from flask import Blueprint

bp = Blueprint("sync_api", __name__)
