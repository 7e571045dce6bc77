"""Replays the walk through weeks 4-8 of docs/contributing-labs.md on a vLLM-shaped repository
built by tests/contrib_fixture.py, printing each command and its real output:

    python scripts/contrib_demo.py /tmp/demo        # an empty or missing folder

pr-merged replays the recorded GitHub responses of tests/data/github (no network). The week-4
labs need the installed vLLM (`z2v vllm install`); without it they are skipped.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import contrib_fixture as cf  # noqa: E402

DEMO = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/z2v-contrib-demo").absolute()
Z2V = [sys.executable, "-m", "zero2vllm"]
ENV = {**os.environ, "ZERO2VLLM_HOME": str(DEMO / "home"), "NO_COLOR": "1",
       "PRE_COMMIT_HOME": str(DEMO / "pre-commit"), "ZERO2VLLM_NOW": "2026-11-30T12:00:00"}
ENV.pop("ZERO2VLLM_DB", None)


def sh(cmd: str, cwd: Path, env: dict | None = None) -> None:
    print(f"$ {cmd}")
    args = shlex.split(cmd)
    if args[0] == "z2v":
        args = Z2V + args[1:]
    proc = subprocess.run(args, cwd=cwd, env={**ENV, **(env or {})}, capture_output=True, text=True)
    print((proc.stdout + proc.stderr).rstrip().replace(str(DEMO), "~"))


def main() -> None:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    DEMO.mkdir(parents=True)
    repo = cf.upstream(DEMO)  # ~/vllm, main plus the branch `fix`
    cf.git(repo, "checkout", "-q", "main")
    cf.git(repo, "branch", "-q", "-D", "fix")
    have_vllm = subprocess.run(Z2V + ["vllm", "doctor", "--quick"], env=ENV, capture_output=True).returncode == 0

    print("## week 4")
    sh("z2v lab init code-map", DEMO)
    shutil.copy(ROOT / "src/zero2vllm/labs/code_map/reference/code-map.toml", DEMO / "code-map")
    sh('z2v contrib predict code-map token_budget "vllm/v1/core/sched/scheduler.py::Scheduler.schedule"', DEMO)
    if have_vllm:
        sh("z2v check code-map", DEMO)

    print("## week 6")
    cf.editable_venv(repo)
    cf.pre_commit_install(repo)
    sh("z2v contrib init vllm", DEMO)
    sh("z2v check dev-setup", repo)
    cf.git(repo, "checkout", "-q", "-b", "test-block-pool-lru")
    cf.add_file(repo, cf.LRU_WEAK_TEST)
    cf.commit(repo, "[Test] block pool frees blocks")
    sh("z2v check own-test", repo)
    cf.add_file(repo, cf.LRU_TEST)
    cf.commit(repo, "[Test] block pool reuses freed blocks last")
    sh("z2v check own-test", repo)

    print("## week 7")
    cf.git(repo, "checkout", "-q", "-b", "fix-cdiv", "main")
    cf.add_file(repo, cf.REGRESSION_TEST)
    cf.commit(repo, "[Bugfix] test: cdiv rounds up")
    sh("z2v check repro", repo)
    cf.apply_fix(repo)
    cf.commit(repo, "[Bugfix] cdiv rounds up")
    sh("z2v check repro", repo)
    sh("z2v lab init pr-ready", DEMO)
    (DEMO / "pr-ready" / "PR.md").write_text(cf.PR_GOOD.replace("1 passed", "2 passed"))
    sh("z2v check pr-ready", DEMO)
    (DEMO / "pr-ready" / "PR.md").write_text(cf.PR_GOOD)
    sh("z2v check pr-ready", DEMO)

    print("## week 8")
    url = "https://github.com/vllm-project/vllm/pull/31234"
    sh(f"z2v contrib init vllm --pr {url}", DEMO)
    for stage in ("opened", "merged"):
        replay = {"ZERO2VLLM_GITHUB_REPLAY": str(ROOT / "tests/data/github" / stage)}
        sh("z2v contrib status", DEMO, replay)
        sh("z2v check pr-merged", DEMO, replay)


if __name__ == "__main__":
    main()
