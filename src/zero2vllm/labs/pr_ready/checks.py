"""The pr-ready lab's criteria, on PR.md (title on its first line, then the body in vLLM's
template) and the branch of the clone. The Test Plan's commands run in a throw-away worktree
at HEAD; pytest's summary counts are compared with the ones the Test Result quotes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from zero2vllm.labs import contribkit as labkit
from zero2vllm.contrib import prtext, testrun
from zero2vllm.contrib import repo as git
from zero2vllm.labs.framework import CheckFailed, criterion

RFC_THRESHOLD = 500  # vLLM: an RFC issue for changes >500 LOC, excluding kernel/data/config/test
NOT_COUNTED = ("tests/", "csrc/", "docs/", "benchmarks/", "examples/", ".github/", "requirements/")
USER_FACING = ("vllm/entrypoints/", "vllm/config", "vllm/engine/arg_utils.py", "vllm/envs.py",
               "vllm/sampling_params.py")
COMMAND_TIMEOUT_S = 600


def _pr(ctx) -> prtext.PRText:
    if "pr" not in ctx.state:
        raise CheckFailed("not run: needs 'PR.md'")
    return ctx.state["pr"]


@criterion("branch")
def branch(ctx):
    return labkit.find_branch(ctx)


@criterion("PR.md")
def pr_file(ctx):
    folder = ctx.path if ctx.path.is_dir() else ctx.path.parent
    path = folder / "PR.md"
    if not path.is_file() or not path.read_text().strip():
        raise CheckFailed(f"no PR description at {path}",
                          hint="`z2v lab init pr-ready` writes vLLM's template there: fill it in")
    ctx.state["pr"] = prtext.parse(path.read_text())
    return f"{path}: {ctx.state['pr'].title!r}"


@criterion("title tags")
def title_tags(ctx):
    pr = _pr(ctx)
    if not pr.tags:
        raise CheckFailed(f"the title has no [Tag] prefix: {pr.title!r}",
                          hint="start it with the kind of change, e.g. " +
                               " ".join(f"[{t}]" for t in prtext.KNOWN_TAGS))
    if "TODO" in pr.title or len(prtext.TITLE.match(pr.title).group(2)) < 10:
        raise CheckFailed(f"the title does not say what the PR does: {pr.title!r}")
    return " ".join(f"[{t}]" for t in pr.tags)


@criterion("description filled")
def filled(ctx):
    pr = _pr(ctx)
    empty = [name for name in prtext.REQUIRED if len(prtext.section(pr, name)) < 10]
    if empty:
        raise CheckFailed("sections empty or missing: " + ", ".join(empty),
                          hint="keep the template's ## headings and write under each")
    return ", ".join(prtext.REQUIRED) + " filled"


@criterion("test plan runs")
def plan_runs(ctx):
    pr, b = _pr(ctx), labkit.need_branch(ctx)
    cmds = prtext.commands(prtext.section(pr, "Test Plan"))
    if not cmds:
        raise CheckFailed("the Test Plan has no command to run",
                          hint="put the exact commands in a ``` block, e.g. pytest tests/...")
    python = testrun.clone_python(b.repo, labkit.setting(ctx, "python"))
    env = {**os.environ, "PATH": str(Path(python).parent) + os.pathsep + os.environ.get("PATH", "")}
    outputs, failed = [], []
    with git.worktree(b.repo, b.head) as tree:
        env["PYTHONPATH"] = str(tree)
        for cmd in cmds:
            try:
                proc = subprocess.run(["bash", "-c", cmd], cwd=tree, env=env, capture_output=True,
                                      text=True, timeout=COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                failed.append(f"`{cmd}` ran past {COMMAND_TIMEOUT_S} s")
                continue
            outputs.append(proc.stdout + proc.stderr)
            if proc.returncode != 0:
                tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
                failed.append(f"`{cmd}` exited {proc.returncode}: {tail[0][:200]}")
    counts = testrun.summary_counts("\n".join(outputs))
    ctx.metrics.update(test_plan=cmds, test_plan_counts=counts)
    if failed:
        raise CheckFailed("Test Plan commands failed at HEAD: " + "; ".join(failed))
    ctx.state["plan_counts"] = counts
    return f"{len(cmds)} command(s) ran at {b.head[:10]}: " + _fmt(counts)


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no pytest summary"


@criterion("test result matches")
def result_matches(ctx):
    pr = _pr(ctx)
    if "plan_counts" not in ctx.state:
        raise CheckFailed("not run: needs 'test plan runs'")
    ran, claimed = ctx.state["plan_counts"], testrun.summary_counts(prtext.section(pr, "Test Result"))
    if not claimed:
        raise CheckFailed("the Test Result quotes no result", expected=_fmt(ran),
                          hint="paste the summary line pytest printed (e.g. '3 passed in 1.2s')")
    if claimed != ran:
        raise CheckFailed("the Test Result does not match what the Test Plan's commands give now",
                          expected=_fmt(ran), got=_fmt(claimed),
                          hint="rerun the Test Plan on your latest commit and paste its result")
    return f"Test Result says {_fmt(claimed)}, as the rerun gives"


@criterion("signed off")
def signed_off(ctx):
    return labkit.signed_off(ctx)


@criterion("diff size")
def diff_size(ctx):
    b, pr = labkit.need_branch(ctx), _pr(ctx)
    counted = sum(a + d for a, d, p in git.numstat(b) if not p.startswith(NOT_COUNTED)
                  and not p.endswith((".json", ".yaml", ".yml", ".toml", ".cu", ".cuh")))
    ctx.metrics["lines_changed"] = counted
    if counted > RFC_THRESHOLD and not prtext.links_rfc(pr.body):
        raise CheckFailed(f"{counted} lines changed (tests, kernels, docs, config not counted), over "
                          f"vLLM's {RFC_THRESHOLD}-line RFC threshold, and no RFC issue linked",
                          hint="open an [RFC] issue for the design and link it, or split the PR")
    return f"{counted} lines changed (RFC needed above {RFC_THRESHOLD})"


@criterion("docs touched")
def docs(ctx):
    b = labkit.need_branch(ctx)
    paths = [p for _, p in git.changed_files(b)]
    facing = [p for p in paths if p.startswith(USER_FACING)]
    if not facing:
        return "no user-facing change (entrypoints, config, envs, sampling params)"
    if not any(p.startswith("docs/") for p in paths):
        raise CheckFailed("user-facing change without a docs change: " + ", ".join(facing[:4]),
                          hint="update the page under docs/ that describes this option or command")
    return "user-facing change, docs updated"
