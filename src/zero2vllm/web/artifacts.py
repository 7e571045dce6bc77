"""Which lab artifacts the dashboard serves, and how: never as script in the dashboard's origin.

A file is served only when it lies in a folder the tools write artifacts into (labs, compare,
bench, profiles under the data directory), is not a SQLite file (the store, a backup), and has
a type from a fixed list: pictures and text shown in the page, other known outputs as
downloads. Every answer carries a CSP that sandboxes it (no script, no same-origin rights),
so even an SVG or a file a browser might sniff cannot act as the dashboard.
"""

from __future__ import annotations

from pathlib import Path

from flask import Response, send_file

ARTIFACT_DIRS = ("labs", "compare", "bench", "profiles")  # where commands write their outputs
INLINE = {  # shown in the page (an <img>, or text)
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
    ".webp": "image/webp", ".svg": "image/svg+xml",
    ".txt": "text/plain", ".log": "text/plain", ".csv": "text/plain", ".json": "text/plain",
    ".jsonl": "text/plain", ".md": "text/plain",
}
DOWNLOAD = {".html", ".pt", ".pth", ".safetensors", ".bin", ".npz", ".npy", ".gz", ".zip",
            ".tar", ".pdf"}
IMAGES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg"}
SANDBOX_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"
SQLITE_MAGIC = b"SQLite format 3\0"


class NotServed(Exception):
    """A recorded artifact the dashboard will not serve; the message says why."""


def check(path: Path, data_root: Path, store_paths: list[Path]) -> Path:
    """PATH resolved, if the dashboard may serve it; else NotServed (or FileNotFoundError)."""
    path, root = Path(path).resolve(), Path(data_root).resolve()
    if not any(path.is_relative_to(root / d) for d in ARTIFACT_DIRS):
        raise NotServed(f"{path.name} is not in a folder where zero2vllm writes lab outputs "
                        f"({', '.join(ARTIFACT_DIRS)} under {root})")
    suffix = path.suffix.lower()
    if suffix not in INLINE and suffix not in DOWNLOAD:
        raise NotServed(f"{path.name}: the dashboard does not serve {suffix or 'extension-less'} files")
    if any(path == Path(p).resolve() for p in store_paths):
        raise NotServed(f"{path.name} is the store")
    if not path.is_file():
        raise FileNotFoundError(f"{path} no longer exists")
    with open(path, "rb") as f:
        if f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC:
            raise NotServed(f"{path.name} is a database")
    return path


def servable(path: Path, data_root: Path, store_paths: list[Path]) -> bool:
    try:
        check(path, data_root, store_paths)
        return True
    except (NotServed, OSError):
        return False


def response(path: Path) -> Response:
    suffix = path.suffix.lower()
    if suffix in INLINE:
        mimetype = INLINE[suffix] + ("; charset=utf-8" if INLINE[suffix] == "text/plain" else "")
        resp = send_file(path, mimetype=mimetype, max_age=0)
    else:
        resp = send_file(path, mimetype="application/octet-stream", as_attachment=True,
                         download_name=path.name, max_age=0)
    resp.headers["Content-Security-Policy"] = SANDBOX_CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    return resp
