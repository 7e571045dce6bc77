"""Helpers shared by the dashboard tests (import with `from web_helpers import token_of`)."""

from __future__ import annotations

import re


def csrf_token(html: str) -> str:
    """The CSRF token a page's forms carry."""
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def token_of(client, path: str = "/week/1") -> str:
    """The CSRF token of the page at PATH, fetched with the Flask test CLIENT."""
    return csrf_token(client.get(path).get_data(as_text=True))
