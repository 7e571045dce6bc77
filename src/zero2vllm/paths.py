"""Where zero2vllm keeps its data: $ZERO2VLLM_HOME, else the per-user data directory."""

from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "ZERO2VLLM_HOME"
PACKAGE_DATA = Path(__file__).parent / "data"


class DataDirError(Exception):
    """The data directory cannot be created or used; the message says which and what to do."""


def data_dir() -> Path:
    home = os.environ.get(ENV_HOME)
    if home:
        path = Path(home).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("zero2vllm", appauthor=False))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        source = f"${ENV_HOME}" if home else "the per-user data directory"
        raise DataDirError(f"cannot create the data directory {path} ({source}): {exc.strerror}; "
                           f"set {ENV_HOME} to a writable directory, or pass --db FILE") from None
    return path


def db_path() -> Path:
    return data_dir() / "zero2vllm.db"


def default_plan_path() -> Path:
    return PACKAGE_DATA / "default_plan.txt"


def shakespeare_path() -> Path:
    return PACKAGE_DATA / "tinyshakespeare.txt"
