"""Builds a tiny git repository shaped like vLLM (no network: vLLM's own is over 1 GB), and the
learner states the contribution labs judge: a branch with a fix and its test, a test that passes
on both sides, unsigned commits, a PR description...

Each public `state_*` function takes an empty directory and returns the path to check; the
contribution labs' tests and their dev-check cases (tests/lab_cases/<lab>/cases.toml, key
`builder = "contrib_fixture:state_..."`) both use them.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

AUTHOR = ("Ada Learner", "ada@example.com")

FILES = {
    "vllm/__init__.py": '__version__ = "0.32.0"\n',
    "vllm/utils.py": '''\
        def cdiv(a: int, b: int) -> int:
            """Ceiling division: blocks needed for A tokens in blocks of B."""
            return a // b
        ''',
    "vllm/v1/__init__.py": "",
    "vllm/v1/core/__init__.py": "",
    "vllm/v1/core/kv_cache_utils.py": '''\
        NONE_HASH = b"none"


        def hash_block_tokens(hash_function, parent_block_hash, curr_block_token_ids, extra_keys=None):
            if not parent_block_hash:
                parent_block_hash = NONE_HASH
            curr_block_token_ids_tuple = tuple(curr_block_token_ids)
            return hash_function((parent_block_hash, curr_block_token_ids_tuple, extra_keys))
        ''',
    "vllm/v1/core/block_pool.py": '''\
        from collections import deque


        class FreeQueue:
            def __init__(self, ids):
                self.q = deque(ids)

            def popleft(self):
                return self.q.popleft()

            def append_n(self, ids):
                self.q.extend(ids)

            def prepend_n(self, ids):
                self.q.extendleft(reversed(ids))


        class BlockPool:
            def __init__(self, n):
                self.free_block_queue = FreeQueue(range(n))

            def get_new_blocks(self, n):
                return [self.free_block_queue.popleft() for _ in range(n)]

            def free_blocks(self, ordered_blocks):
                blocks_to_evict_last = list(ordered_blocks)
                self.free_block_queue.append_n(blocks_to_evict_last)
        ''',
    "vllm/v1/core/sched/__init__.py": "",
    "vllm/v1/core/sched/scheduler.py": '''\
        class Scheduler:
            def __init__(self, max_num_batched_tokens):
                self.max_num_batched_tokens = max_num_batched_tokens

            def schedule(self, requests):
                token_budget = self.max_num_batched_tokens
                scheduled = {}
                for request_id, num_new_tokens in requests:
                    num_new_tokens = min(num_new_tokens, token_budget)
                    if num_new_tokens == 0:
                        break
                    scheduled[request_id] = num_new_tokens
                    token_budget -= num_new_tokens
                return scheduled

            def _preempt_request(self, request):
                request.status = "preempted"
                request.num_computed_tokens = 0
        ''',
    "vllm/v1/executor/__init__.py": "",
    "vllm/v1/executor/abstract.py": '''\
        class Executor:
            def execute_model(self, scheduler_output):
                return {"sampled": list(scheduler_output)}
        ''',
    "vllm/v1/engine/__init__.py": "",
    "vllm/v1/engine/core.py": '''\
        class EngineCore:
            def __init__(self, scheduler, model_executor):
                self.scheduler, self.model_executor = scheduler, model_executor

            def step(self):
                scheduler_output = self.scheduler.schedule([])
                model_output = self.model_executor.execute_model(scheduler_output)
                return self.scheduler.update_from_output(scheduler_output, model_output)
        ''',
    "vllm/entrypoints/__init__.py": "",
    "vllm/entrypoints/cli.py": '''\
        def parser_args():
            return ["--model"]
        ''',
    "docs/usage.md": "# Usage\n\nvllm serve MODEL\n",
    "tests/__init__.py": "",
    "tests/test_scheduler.py": '''\
        from vllm.v1.core.sched.scheduler import Scheduler


        def test_budget_caps_one_request():
            assert Scheduler(8).schedule([("a", 20)]) == {"a": 8}
        ''',
    "tests/v1/__init__.py": "",
    "tests/v1/core/__init__.py": "",
    "tests/v1/core/test_kv_cache_utils.py": '''\
        from vllm.v1.core.kv_cache_utils import hash_block_tokens


        def test_hash_depends_on_parent():
            h = hash
            assert hash_block_tokens(h, None, [1, 2]) != hash_block_tokens(h, b"p", [1, 2])


        def test_hash_depends_on_tokens():
            h = hash
            assert hash_block_tokens(h, None, [1, 2]) != hash_block_tokens(h, None, [1, 3])
        ''',
    "pyproject.toml": '''\
        [project]
        name = "vllm"
        version = "0.32.0"

        [tool.pytest.ini_options]
        testpaths = ["tests"]
        ''',
    # pygrep hooks need no environment, so pre-commit runs without the network.
    ".pre-commit-config.yaml": '''\
        repos:
        - repo: local
          hooks:
          - id: no-trailing-whitespace
            name: no trailing whitespace
            language: pygrep
            entry: '[ \\t]+$'
            types: [python]
        ''',
}


def git(repo: Path, *args: str, env: dict | None = None) -> str:
    import os

    base_env = {**os.environ, "GIT_AUTHOR_DATE": "2026-11-30T10:00:00Z",
                "GIT_COMMITTER_DATE": "2026-11-30T10:00:00Z", **(env or {})}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=base_env).stdout


def write(repo: Path, rel: str, text: str) -> None:
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def commit(repo: Path, message: str, *, signoff: bool = True, author: tuple[str, str] = AUTHOR) -> None:
    git(repo, "add", "-A")
    args = ["-c", f"user.name={author[0]}", "-c", f"user.email={author[1]}", "commit", "-q", "-m", message]
    git(repo, *args, *(["--signoff"] if signoff else []))


def upstream(root: Path) -> Path:
    """The clone: `main` with one upstream commit, and the learner's branch `fix` checked out."""
    repo = root / "vllm"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for rel, text in FILES.items():
        write(repo, rel, text)
    commit(repo, "[Core] initial", author=("vLLM Bot", "bot@vllm.ai"))
    git(repo, "checkout", "-q", "-b", "fix")
    return repo


# -- the learner's changes --------------------------------------------------------------------
FIX = ("vllm/utils.py", "    return a // b\n", "    return -(-a // b)\n")
REGRESSION_TEST = ("tests/test_utils.py", '''\
    from vllm.utils import cdiv


    def test_cdiv_rounds_up():
        assert cdiv(17, 16) == 2
    ''')
WEAK_TEST = ("tests/test_utils.py", '''\
    from vllm.utils import cdiv


    def test_cdiv_exact():
        assert cdiv(32, 16) == 2
    ''')
LRU_TEST = ("tests/v1/core/test_block_pool_lru.py", '''\
    from vllm.v1.core.block_pool import BlockPool


    def test_freed_blocks_are_reused_last():
        pool = BlockPool(4)
        first = pool.get_new_blocks(2)
        pool.free_blocks(first)
        assert pool.get_new_blocks(2) == [2, 3]
    ''')
LRU_WEAK_TEST = ("tests/v1/core/test_block_pool_lru.py", '''\
    from vllm.v1.core.block_pool import BlockPool


    def test_free_returns_blocks():
        pool = BlockPool(4)
        pool.free_blocks(pool.get_new_blocks(2))
        assert len(pool.get_new_blocks(4)) == 4
    ''')


def apply_fix(repo: Path, fix=FIX) -> None:
    path = repo / fix[0]
    path.write_text(path.read_text().replace(fix[1], fix[2]))


def add_file(repo: Path, spec: tuple[str, str]) -> None:
    write(repo, spec[0], spec[1])


# -- learner states, one per verdict (each returns the path to check) ---------------------------
def state_repro_fixed(root: Path) -> Path:
    """fail→pass: the test shows the bug and the fix makes it pass."""
    repo = upstream(root)
    add_file(repo, REGRESSION_TEST)
    apply_fix(repo)
    commit(repo, "[Bugfix] cdiv rounds up")
    return repo


def state_repro_pass_pass(root: Path) -> Path:
    repo = upstream(root)
    add_file(repo, WEAK_TEST)
    apply_fix(repo)
    commit(repo, "[Bugfix] cdiv rounds up")
    return repo


def state_repro_fail_fail(root: Path) -> Path:
    repo = upstream(root)
    add_file(repo, REGRESSION_TEST)
    commit(repo, "[Bugfix] test for cdiv")
    return repo


def state_repro_pass_fail(root: Path) -> Path:
    repo = upstream(root)
    add_file(repo, WEAK_TEST)
    apply_fix(repo, ("vllm/utils.py", "    return a // b\n", "    return a // b + 1\n"))
    commit(repo, "[Bugfix] cdiv rounds up")
    return repo


def state_repro_no_test(root: Path) -> Path:
    repo = upstream(root)
    apply_fix(repo)
    commit(repo, "[Bugfix] cdiv rounds up")
    return repo


def state_no_branch(root: Path) -> Path:
    """The untouched clone: on the branch, but no commits on it yet."""
    return upstream(root)


def state_own_test_good(root: Path) -> Path:
    """A test of LRU reuse that the lru-eviction mutation breaks; signed off; pre-commit clean."""
    repo = upstream(root)
    add_file(repo, LRU_TEST)
    commit(repo, "[Test] block pool reuses freed blocks last")
    return repo


def state_own_test_weak(root: Path) -> Path:
    """A test that passes whatever the eviction order: no mutation makes it fail."""
    repo = upstream(root)
    add_file(repo, LRU_WEAK_TEST)
    commit(repo, "[Test] block pool frees blocks")
    return repo


def state_own_test_failing(root: Path) -> Path:
    repo = upstream(root)
    add_file(repo, (LRU_TEST[0], LRU_TEST[1].replace("[2, 3]", "[0, 1]")))
    commit(repo, "[Test] block pool reuses freed blocks first")
    return repo


def state_own_test_unsigned(root: Path) -> Path:
    repo = upstream(root)
    add_file(repo, LRU_TEST)
    commit(repo, "[Test] block pool reuses freed blocks last", signoff=False)
    return repo


def state_own_test_whitespace(root: Path) -> Path:
    """The good test with trailing whitespace: the pre-commit hook rejects it."""
    repo = upstream(root)
    add_file(repo, (LRU_TEST[0], LRU_TEST[1].replace("pool = BlockPool(4)", "pool = BlockPool(4)   ")))
    commit(repo, "[Test] block pool reuses freed blocks last")
    return repo


PR_GOOD = """\
[Bugfix] cdiv rounds up, so a 17-token prompt gets 2 blocks

## Purpose

`cdiv` floored, so the last partial block of a prompt was never allocated. FIX #1234

## Test Plan

```
pytest tests/test_utils.py -q
```

## Test Result

```
1 passed in 0.01s
```
"""


def state_pr_ready_good(root: Path, pr: str = PR_GOOD) -> Path:
    """The repro branch plus its PR.md (untracked, at the clone's root)."""
    repo = state_repro_fixed(root)
    (repo / "PR.md").write_text(pr)
    return repo


def state_pr_ready_no_tag(root: Path) -> Path:
    return state_pr_ready_good(root, PR_GOOD.replace("[Bugfix] ", "", 1))


def state_pr_ready_empty_result(root: Path) -> Path:
    return state_pr_ready_good(root, PR_GOOD.split("## Test Result")[0] + "## Test Result\n\n<!-- TODO -->\n")


def state_pr_ready_result_mismatch(root: Path) -> Path:
    return state_pr_ready_good(root, PR_GOOD.replace("1 passed", "2 passed"))


def state_pr_ready_plan_fails(root: Path) -> Path:
    return state_pr_ready_good(root, PR_GOOD.replace("pytest tests/test_utils.py -q",
                                                     "pytest tests/test_missing.py -q"))


def state_pr_ready_big_diff(root: Path) -> Path:
    repo = state_pr_ready_good(root)
    write(repo, "vllm/big.py", "".join(f"X{i} = {i}\n" for i in range(600)))
    commit(repo, "[Core] a large change")
    return repo


def state_pr_ready_user_facing(root: Path) -> Path:
    repo = state_pr_ready_good(root)
    path = repo / "vllm/entrypoints/cli.py"
    path.write_text(path.read_text().replace('["--model"]', '["--model", "--block-size"]'))
    commit(repo, "[Frontend] --block-size")
    return repo


def state_pr_ready_unsigned(root: Path) -> Path:
    repo = state_pr_ready_good(root)
    write(repo, "vllm/v1/core/note.py", "NOTE = 1\n")
    commit(repo, "[Misc] note", signoff=False)
    return repo


# -- dev-setup: an editable install is a venv whose site-packages points at the clone ----------
def editable_venv(repo: Path) -> Path:
    """CLONE/.venv importing vllm from the clone, as `pip install -e .` leaves it (a .pth file),
    plus this interpreter's packages (pytest) so no download is needed."""
    import site
    import sys

    venv = repo / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pkgs = next(venv.glob("lib/python*/site-packages"))
    (pkgs / "__editable__.vllm.pth").write_text(f"{repo}\n")
    (pkgs / "z2v-test-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv / "bin" / "python"


def pre_commit_install(repo: Path) -> None:
    import sys

    subprocess.run([sys.executable, "-m", "pre_commit", "install"], cwd=repo, check=True,
                   capture_output=True)


def state_dev_setup_good(root: Path) -> Path:
    repo = upstream(root)
    editable_venv(repo)
    pre_commit_install(repo)
    return repo


def state_dev_setup_not_editable(root: Path) -> Path:
    repo = upstream(root)
    pre_commit_install(repo)
    return repo


def state_dev_setup_no_hook(root: Path) -> Path:
    repo = upstream(root)
    editable_venv(repo)
    return repo


def state_dev_setup_own_hooks(root: Path) -> Path:
    repo = state_dev_setup_good(root)
    (repo / ".pre-commit-config.yaml").write_text("repos: []\n")
    return repo


def state_dev_setup_failing_test(root: Path) -> Path:
    repo = state_dev_setup_good(root)
    path = repo / "tests/v1/core/test_kv_cache_utils.py"
    path.write_text(path.read_text().replace("!= hash_block_tokens(h, None, [1, 3])",
                                             "== hash_block_tokens(h, None, [1, 3])"))
    return repo


def state_pr_url(root: Path) -> Path:
    """A pr-merged lab folder naming the recorded PR; the case's env picks the recorded stage
    (ZERO2VLLM_GITHUB_REPLAY={tests}/data/github/<stage>)."""
    folder = root / "pr-merged"
    folder.mkdir(parents=True)
    (folder / "pr-url.txt").write_text("https://github.com/vllm-project/vllm/pull/31234\n")
    return folder


def state_empty(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return root
