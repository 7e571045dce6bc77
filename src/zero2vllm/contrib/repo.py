"""Git plumbing for the contribution labs: find the learner's clone and its base, list the
branch's commits and changed files, and check revisions out in throw-away trees (so a check
never touches the learner's clone)."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

BASE_CANDIDATES = ("upstream/main", "origin/main", "main", "master")
SIGNED_OFF = re.compile(r"^Signed-off-by:\s*(?P<name>.+?)\s*<(?P<email>[^>]+)>\s*$", re.M)


class RepoError(Exception):
    """One line saying what is wrong with the clone and what to run."""


def git(repo: Path, *args: str, check: bool = True, timeout: float = 120) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise RepoError(f"`git {' '.join(args)}` failed in {repo}: {err}")
    return proc.stdout


def toplevel(path: Path) -> Path | None:
    """The work tree that PATH is in, or None."""
    path = Path(path)
    start = path if path.is_dir() else path.parent
    if not start.exists() or shutil.which("git") is None:
        return None
    proc = subprocess.run(["git", "-C", str(start), "rev-parse", "--show-toplevel"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return Path(proc.stdout.strip()) if proc.returncode == 0 else None


def find_clone(path: Path | None, clone: str | None = None) -> Path:
    """The clone a check works on: the git work tree PATH is in, else CLONE (the one
    `z2v contrib init` stored). A tree without a vllm/ package (a lab folder inside some other
    repository) gives way to the stored clone."""
    if path is not None:
        top = toplevel(path)
        if top is not None and ((top / "vllm").is_dir() or not clone):
            return top
    if clone and toplevel(Path(clone)) is not None:
        return Path(clone)
    if clone:
        raise RepoError(f"the stored clone {clone} is not a git work tree any more; "
                        "run `z2v contrib init PATH` again")
    raise RepoError("no vLLM clone: run `z2v contrib init PATH` (or run the check inside your clone)")


def rev(repo: Path, ref: str) -> str | None:
    proc = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", ref + "^{commit}"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return proc.stdout.strip() if proc.returncode == 0 else None


def base_ref(repo: Path, wanted: str | None = None) -> str:
    """The branch the PR goes into: WANTED (the stored `--base`), else upstream/main,
    origin/main, main."""
    for ref in ([wanted] if wanted else []) + list(BASE_CANDIDATES):
        if rev(repo, ref):
            return ref
    if wanted:
        raise RepoError(f"the base {wanted!r} does not exist in {repo}; "
                        "`git fetch` it or run `z2v contrib init PATH --base REF`")
    raise RepoError(f"{repo} has no main branch to compare with; "
                    "run `z2v contrib init PATH --base REF`")


@dataclass
class Branch:
    repo: Path
    base: str  # the ref name
    merge_base: str  # sha
    head: str  # sha


def branch(repo: Path, base: str | None = None) -> Branch:
    """REPO's HEAD against BASE (the stored `--base`, else the first of BASE_CANDIDATES)."""
    base = base_ref(repo, base)
    head = rev(repo, "HEAD")
    if head is None:
        raise RepoError(f"{repo} has no commits")
    mb = git(repo, "merge-base", base, "HEAD").strip()
    return Branch(repo, base, mb, head)


def changed_files(b: Branch) -> list[tuple[str, str]]:
    """(status letter, path) of every file the branch changes against its merge base."""
    out = git(b.repo, "diff", "--name-status", "--no-renames", b.merge_base, b.head)
    return [(line[0], line.split("\t", 1)[1]) for line in out.splitlines() if "\t" in line]


def numstat(b: Branch) -> list[tuple[int, int, str]]:
    """(added, deleted, path) per changed file; binary files count 0."""
    rows = []
    for line in git(b.repo, "diff", "--numstat", "--no-renames", b.merge_base, b.head).splitlines():
        added, deleted, path = line.split("\t", 2)
        rows.append((int(added) if added.isdigit() else 0, int(deleted) if deleted.isdigit() else 0, path))
    return rows


def commits(b: Branch) -> list[dict]:
    """The branch's commits, oldest first: sha, subject, author, message, sign-offs."""
    fmt = "%H%x1f%an%x1f%ae%x1f%B%x1e"
    out = git(b.repo, "log", "--reverse", f"--format={fmt}", f"{b.merge_base}..{b.head}")
    rows = []
    for rec in out.split("\x1e"):
        if not rec.strip():
            continue
        sha, name, email, body = rec.strip("\n").split("\x1f", 3)
        rows.append({"sha": sha, "author": name, "email": email, "subject": body.splitlines()[0] if body else "",
                     "message": body, "signoffs": [(m["name"], m["email"]) for m in SIGNED_OFF.finditer(body)]})
    return rows


def show(repo: Path, sha: str, path: str) -> str | None:
    proc = subprocess.run(["git", "-C", str(repo), "show", f"{sha}:{path}"], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    return proc.stdout if proc.returncode == 0 else None


def is_test_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return path.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py")) and \
        ("tests/" in path or path.startswith("test"))


def test_functions(source: str | None) -> dict[str, str]:
    """{"Class::test_x" or "test_x": its source} for the test functions in SOURCE."""
    if not source:
        return {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            found[node.name] = ast.get_source_segment(source, node) or node.name
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and sub.name.startswith("test"):
                    found[f"{node.name}::{sub.name}"] = ast.get_source_segment(source, sub) or sub.name
    return found


def new_tests(b: Branch) -> dict[str, list[str]]:
    """{test file: [tests the branch adds or changes]}: test functions whose source differs
    between the merge base and HEAD."""
    out = {}
    for status, path in changed_files(b):
        if status == "D" or not is_test_file(path):
            continue
        before = test_functions(show(b.repo, b.merge_base, path))
        after = test_functions(show(b.repo, b.head, path))
        names = [n for n, src in after.items() if before.get(n) != src]
        if names:
            out[path] = names
    return out


@contextmanager
def worktree(repo: Path, sha: str, *, overlay: dict[str, str] | None = None) -> Iterator[Path]:
    """SHA checked out in a temporary tree (detached), removed afterwards. OVERLAY writes
    files over it ({path: text}: the branch's tests on the base's code). Built extensions (*.so)
    of the clone's vllm/ are copied in, so Python-only changes run against the same binaries.
    A `--shared` clone, not `git worktree add`: it only reads the learner's clone (read-only
    in the check's sandbox) and still has the history pre-commit diffs against."""
    tmp = Path(tempfile.mkdtemp(prefix="z2v-wt-"))
    path = tmp / "tree"
    try:
        git(tmp, "clone", "--shared", "--quiet", "--no-checkout", str(repo), str(path), timeout=600)
        git(path, "checkout", "--quiet", "--detach", sha, timeout=600)
        for so in (repo / "vllm").glob("**/*.so") if (repo / "vllm").is_dir() else []:
            dest = path / so.relative_to(repo)
            if not dest.exists() and dest.parent.is_dir():
                shutil.copy2(so, dest)
        for rel, text in (overlay or {}).items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_text(text)
        yield path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
