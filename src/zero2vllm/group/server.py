"""Serving the group server in production, and its secret key.

waitress, not gunicorn: measured side by side on the 2-core machine (benchmarks/group_wsgi.py,
docs/benchmarks.md "Group server"); it also runs in one process on any OS, so one connection
pool is shared by all threads. gunicorn works too, for those who prefer it:
`ZERO2VLLM_GROUP_DB=postgresql://... gunicorn -k gthread 'zero2vllm.group.server:app_from_env()'`.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

ENV_SECRET_FILE = "ZERO2VLLM_GROUP_SECRET_FILE"
SECRET_NAME = "group-server.secret"


class SecretError(Exception):
    """The secret file cannot be read or made (one line)."""


def default_secret_file() -> Path:
    """$ZERO2VLLM_GROUP_SECRET_FILE, else group-server.secret in the zero2vllm data directory."""
    if os.environ.get(ENV_SECRET_FILE):
        return Path(os.environ[ENV_SECRET_FILE])
    from zero2vllm.paths import data_dir

    return data_dir() / SECRET_NAME


def load_secret(path: Path | None = None) -> bytes:
    """The key in PATH, made (32 random bytes, hex, mode 0600) when the file does not exist, so a
    restarted server keeps signing the same pre-login form tokens."""
    path = Path(path) if path else default_secret_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SecretError(f"cannot make the secret file {path}: {exc.strerror or exc}") from None
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"cannot read the secret file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if len(text) < 32:
        raise SecretError(f"the secret file {path} holds fewer than 32 characters: delete it to make a new one")
    if path.stat().st_mode & 0o077:
        raise SecretError(f"the secret file {path} is readable by others: chmod 600 {path}")
    return text.encode("ascii")


def app_from_env():
    """The app for a WSGI server started by hand: ZERO2VLLM_GROUP_DB and the secret file."""
    from zero2vllm.group.app import create_app

    return create_app(None, secret_key=load_secret(),
                      trusted_proxies=int(os.environ.get("ZERO2VLLM_GROUP_PROXIES", "0") or 0))


class Server:
    """waitress bound to HOST:PORT; `.port` is the real port (useful with port 0)."""

    def __init__(self, app, host: str, port: int, threads: int = 8):
        from waitress.server import create_server

        # "Task queue depth is N" on every burst is noise; real errors still show.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self.host = host
        self._server = create_server(app, host=host, port=port, threads=threads, ident="zero2vllm-group",
                                     connection_limit=500, channel_timeout=60, clear_untrusted_proxy_headers=False)
        self.port = self._server.effective_port
        self.run, self.close = self._server.run, self._server.close

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"
