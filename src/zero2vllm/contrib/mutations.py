"""A small catalogue of mutations of vLLM's V1 core: behaviours traced in weeks 4-5, each broken
by a one-line change. A test that still passes with the behaviour broken does not test it.

Each mutation replaces one line inside one function (`Class.method` in a file), matched on the
line's text without its indentation, so it applies to vLLM 0.32 and to any tree whose function
still holds that line.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    symbol: str  # "Class.method" or "function"
    old: str  # a whole line, without indentation
    new: str
    breaks: str  # the behaviour it breaks, for the report

    @property
    def module(self) -> str:
        return self.file[:-3].replace("/", ".")


CATALOGUE = (
    Mutation("lru-eviction", "vllm/v1/core/block_pool.py", "BlockPool.free_blocks",
             "self.free_block_queue.append_n(blocks_to_evict_last)",
             "self.free_block_queue.prepend_n(blocks_to_evict_last)",
             "freed cached blocks go to the front of the free queue: the most recently used "
             "block is evicted first (not LRU)"),
    Mutation("hash-chain", "vllm/v1/core/kv_cache_utils.py", "hash_block_tokens",
             "hash_function((parent_block_hash, curr_block_token_ids_tuple, extra_keys))",
             "hash_function((NONE_HASH, curr_block_token_ids_tuple, extra_keys))",
             "a block's hash ignores its parent's: equal blocks after different prefixes collide"),
    Mutation("preempt-reset", "vllm/v1/core/sched/scheduler.py", "Scheduler._preempt_request",
             "request.num_computed_tokens = 0", "pass",
             "a preempted request keeps its computed tokens although its blocks were freed"),
    Mutation("token-budget", "vllm/v1/core/sched/scheduler.py", "Scheduler.schedule",
             "token_budget -= num_new_tokens", "token_budget -= 0",
             "scheduled tokens never use up the step's token budget"),
)


def find_symbol(tree: ast.Module, symbol: str) -> ast.AST | None:
    """The node of "Class.method", "Class" or "function" at the top level of TREE."""
    scope: list[ast.stmt] = tree.body
    node = None
    for part in symbol.split("."):
        node = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                         ast.ClassDef)) and n.name == part), None)
        if node is None:
            return None
        scope = node.body
    return node


def mutate_source(source: str, m: Mutation) -> str | None:
    """SOURCE with M applied, or None when its function or line is not there."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    node = find_symbol(tree, m.symbol)
    if node is None:
        return None
    lines = source.splitlines(keepends=True)
    for i in range(node.lineno - 1, node.end_lineno):
        text = lines[i]
        if text.strip() == m.old:
            indent = text[: len(text) - len(text.lstrip())]
            lines[i] = indent + m.new + ("\n" if text.endswith("\n") else "")
            return "".join(lines)
    return None


def applicable(tree_dir: Path) -> list[tuple[Mutation, str]]:
    """(mutation, mutated source) for each catalogue entry that applies to TREE_DIR."""
    out = []
    for m in CATALOGUE:
        path = tree_dir / m.file
        if path.is_file():
            mutated = mutate_source(path.read_text(), m)
            if mutated is not None:
                out.append((m, mutated))
    return out


def imported_modules(source: str) -> set[str]:
    """Dotted modules a test file imports (`import a.b`, `from a.b import c` gives a.b and a.b.c)."""
    mods: set[str] = set()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return mods
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
            mods.update(f"{node.module}.{a.name}" for a in node.names)
    return mods


def relevant(candidates: list[tuple[Mutation, str]], test_sources: list[str]) -> list[tuple[Mutation, str]]:
    """The mutations in modules the tests import; all of them when the tests import none."""
    mods = set().union(*(imported_modules(s) for s in test_sources)) if test_sources else set()
    picked = [c for c in candidates if c[0].module in mods]
    return picked or candidates
