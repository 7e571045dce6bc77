"""The local web dashboard (`z2v serve dashboard`): Flask + Jinja2 pages, htmx for in-place
updates, charts as inline SVG. Imported only by that command, so the CLI stays fast."""

from zero2vllm.web.app import create_app

__all__ = ["create_app"]
