"""The dev-setup lab's criteria: the clone's Python imports vllm from the clone (an editable
install; VLLM_USE_PRECOMPILED=1 makes it Python-only), pre-commit's git hook is installed with
the clone's own (unmodified) .pre-commit-config.yaml, and the V1 core tests that need no GPU run
with a JUnit report whose counts are kept."""

from __future__ import annotations

from pathlib import Path

from zero2vllm.contrib import repo as git
from zero2vllm.contrib import testrun, vllmsrc
from zero2vllm.labs.contribkit import setting
from zero2vllm.labs.framework import CheckFailed, criterion

# CPU-runnable unit tests of vLLM's V1 core (no GPU, no model download); the check runs those
# the clone has.
CORE_TESTS = ("tests/v1/core/test_kv_cache_utils.py", "tests/v1/core/test_prefix_caching.py",
              "tests/v1/core/test_single_type_kv_cache_manager.py", "tests/v1/core/test_scheduler.py")


def _clone(ctx) -> Path:
    if "clone" not in ctx.state:
        raise CheckFailed("not run: needs 'clone'")
    return ctx.state["clone"]


@criterion("clone")
def clone(ctx):
    try:
        top = git.find_clone(ctx.path, setting(ctx, "clone"))
    except git.RepoError as exc:
        raise CheckFailed(str(exc)) from None
    head = git.git(top, "rev-parse", "HEAD").strip()
    branch = git.git(top, "rev-parse", "--abbrev-ref", "HEAD").strip()
    dirty = bool(git.git(top, "status", "--porcelain", "--untracked-files=no").strip())
    ctx.state["clone"] = top
    ctx.metrics.update(clone=str(top), head=head, branch=branch, dirty=dirty)
    return f"{top} at {head[:10]} ({branch}{', uncommitted changes' if dirty else ''})"


@criterion("editable install")
def editable(ctx):
    top = _clone(ctx)
    python = testrun.clone_python(top, setting(ctx, "python"))
    found = vllmsrc.probe(python)
    hint = ("inside the clone, in its venv: VLLM_USE_PRECOMPILED=1 pip install -e . ; then "
            "`z2v contrib init CLONE --python VENV/bin/python` if the venv is not CLONE/.venv")
    if found is None:
        raise CheckFailed(f"{python} cannot find vllm", hint=hint)
    if not found.package_dir.resolve().is_relative_to(top.resolve()):
        raise CheckFailed(f"{python} imports vllm from {found.package_dir}, not from the clone {top}",
                          hint=hint)
    ctx.state["python"] = python
    ctx.metrics.update(python=python, vllm_version=found.version)
    return f"{python} imports vllm {found.version} from {found.package_dir}"


@criterion("pre-commit installed")
def pre_commit(ctx):
    top = _clone(ctx)
    config = top / ".pre-commit-config.yaml"
    if not config.is_file():
        raise CheckFailed(f"{top} has no .pre-commit-config.yaml", hint="is this vLLM's repository?")
    if git.git(top, "status", "--porcelain", "--", ".pre-commit-config.yaml").strip():
        raise CheckFailed(".pre-commit-config.yaml differs from the committed one: the hooks are not vLLM's",
                          hint="git checkout -- .pre-commit-config.yaml")
    hooks = Path(git.git(top, "rev-parse", "--git-path", "hooks").strip())
    hook = hooks if hooks.is_absolute() else top / hooks
    hook = hook / "pre-commit"
    if not hook.is_file() or "pre-commit" not in hook.read_text(errors="replace"):
        raise CheckFailed(f"no pre-commit git hook at {hook}",
                          hint="pip install pre-commit && pre-commit install (in the clone)")
    return f"{hook} runs the hooks of .pre-commit-config.yaml"


@criterion("unit tests")
def unit_tests(ctx):
    top = _clone(ctx)
    python = ctx.state.get("python")
    if python is None:
        raise CheckFailed("not run: needs 'editable install'")
    targets = [t for t in CORE_TESTS if (top / t).is_file()]
    if not targets:
        raise CheckFailed("none of vLLM's V1 core test files are in the clone",
                          expected=", ".join(CORE_TESTS), hint="is the clone complete (git status)?")
    report = Path(ctx.path if ctx.path.is_dir() else ctx.path.parent) / "dev-setup-junit.xml"
    if git.toplevel(report.parent) == top:  # never write into the clone
        report = None
    run = testrun.pytest(top, targets, python=python, junit=report, timeout=1500)
    counts = run.counts()
    ctx.metrics.update(tests=targets, counts=counts, junit=str(report) if report else None)
    if run.timed_out:
        raise CheckFailed("the tests did not finish in 25 minutes")
    if not run.outcomes:
        raise CheckFailed(f"pytest ran no tests (exit code {run.returncode})", got=run.output[-800:])
    bad = [t for t, o in run.outcomes.items() if o in ("failed", "error")]
    if bad:
        raise CheckFailed(f"{len(bad)} of {len(run.outcomes)} tests failed: " + ", ".join(bad[:5]),
                          hint="run them yourself: pytest " + " ".join(targets))
    return ", ".join(f"{n} {k}" for k, n in counts.items() if n) + f" in {', '.join(targets)}"
