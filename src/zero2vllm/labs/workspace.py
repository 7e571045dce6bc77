"""The learner's side of a lab: writing the scaffold, and finding what to check."""

from __future__ import annotations

import shutil
from pathlib import Path

from zero2vllm.labs import Lab


def default_dir(lab: Lab) -> Path:
    """Where `z2v lab init LAB` writes when no DIR is given: ./LAB."""
    return Path.cwd() / lab.id


def resolve_check_path(lab: Lab, path: Path | None) -> Path:
    """What `z2v check LAB` checks without a PATH: ./LAB if it exists, else the current dir."""
    if path is not None:
        return path
    candidate = default_dir(lab)
    return candidate if candidate.is_dir() else Path.cwd()


def init_workspace(lab: Lab, dest: Path) -> tuple[list[Path], list[Path]]:
    """Copy the scaffold into DEST, never overwriting: returns (written, kept as they were)."""
    written, kept = [], []
    for src in sorted(lab.scaffold_dir.rglob("*")):
        rel = src.relative_to(lab.scaffold_dir)
        if src.is_dir() or "__pycache__" in rel.parts:
            continue
        target = dest / rel
        if target.exists():
            kept.append(target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        written.append(target)
    return written, kept
