"""The code-map lab's criteria: code-map.toml parses, was written for the installed vLLM's
version, and each concept's symbol resolves there and is seen doing the thing; then locked
predictions are revealed against every function of vLLM that does it."""

from __future__ import annotations

import ast
import tomllib

from zero2vllm.contrib import predictions as predictions_rule
from zero2vllm.contrib import vllmsrc
from zero2vllm.labs.code_map.concepts import ANCHOR, BY_KEY, CONCEPTS, calls_between, does_it
from zero2vllm.labs.framework import CheckFailed, criterion

FILE = "code-map.toml"


def _map(ctx) -> dict:
    if "map" not in ctx.state:
        raise CheckFailed(f"not run: needs '{FILE}'")
    return ctx.state["map"]


def _vllm(ctx) -> vllmsrc.Installed:
    if "vllm" not in ctx.state:
        raise CheckFailed("not run: needs 'installed vLLM'")
    return ctx.state["vllm"]


@criterion(FILE)
def read_map(ctx):
    folder = ctx.path if ctx.path.is_dir() else ctx.path.parent
    path = folder / FILE
    if not path.is_file():
        raise CheckFailed(f"no {path}", hint="`z2v lab init code-map` writes one to fill in")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise CheckFailed(f"{path} is not valid TOML: {exc}") from None
    answers = doc.get("map") or {}
    todo = [c.key for c in CONCEPTS if str(answers.get(c.key, "TODO")).strip() in ("", "TODO")]
    version = str(doc.get("vllm_version", "TODO")).strip()
    if todo or version in ("", "TODO"):
        missing = todo + (["vllm_version"] if version in ("", "TODO") else [])
        raise CheckFailed("still TODO: " + ", ".join(missing),
                          hint="each answer is vllm/path.py::Class.method; vllm_version is the one you read")
    ctx.state["map"] = {"version": version, "answers": answers}
    return f"{len(answers)} answers for vLLM {version}"


@criterion("installed vLLM")
def installed(ctx):
    try:
        inst = vllmsrc.installed(ctx.inputs.get("contrib"))
    except vllmsrc.SourceError as exc:
        raise CheckFailed(str(exc)) from None
    ctx.state["vllm"] = inst
    ctx.metrics.update(vllm_version=inst.version, vllm_dir=str(inst.package_dir))
    return f"vLLM {inst.version} at {inst.package_dir}"


@criterion("same version")
def same_version(ctx):
    mapped, inst = _map(ctx)["version"], _vllm(ctx)
    if not vllmsrc.same_release(mapped, inst.version):
        raise CheckFailed(f"your map is written for vLLM {mapped}, but the installed vLLM is "
                          f"{inst.version}", hint="read the code of the version you run (code moves "
                          "between releases), then set vllm_version")
    return f"vLLM {inst.version}"


def _concept_check(concept):
    def check(ctx):
        answers, inst = _map(ctx)["answers"], _vllm(ctx)
        symbol = str(answers.get(concept.key, "")).strip()
        try:
            source, where = vllmsrc.resolve(inst, symbol)
        except vllmsrc.SourceError as exc:
            raise CheckFailed(str(exc), hint=concept.question) from None
        if concept.key == "step_calls":
            step, _ = vllmsrc.resolve(inst, ANCHOR)
            called = calls_between(step)
            if symbol.rsplit(".", 1)[-1] not in called:
                raise CheckFailed(f"{symbol} is not called by EngineCore.step between schedule() and "
                                  f"update_from_output() in vLLM {inst.version}",
                                  hint="read EngineCore.step line by line")
        elif not does_it(concept, source):
            raise CheckFailed(f"{symbol} ({where}) does not {concept.does}",
                              hint=concept.question)
        ctx.state.setdefault("resolved", {})[concept.key] = symbol
        return f"{symbol} ({where})"

    check.__name__ = f"concept_{concept.key}"
    return check


for _c in CONCEPTS:
    criterion(_c.key)(_concept_check(_c))


def functions(inst: vllmsrc.Installed) -> list[tuple[str, str, str]]:
    """(symbol, bare name, source) of every function in vLLM's V1 code and executors."""
    found = []
    files = sorted((inst.package_dir / "v1").rglob("*.py")) + sorted((inst.package_dir / "executor").rglob("*.py"))
    for file in files:
        text = file.read_text()
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        lines, rel = text.splitlines(), file.relative_to(inst.root).as_posix()
        stack = [(node, "") for node in tree.body]
        while stack:
            node, prefix = stack.pop()
            if isinstance(node, ast.ClassDef):
                stack += [(n, prefix + node.name + ".") for n in node.body]
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + node.name
                found.append((f"{rel}::{name}", node.name, "\n".join(lines[node.lineno - 1:node.end_lineno])))
                stack += [(n, name + ".") for n in node.body]
    return found


def candidates(inst: vllmsrc.Installed, key: str, index: list[tuple[str, str, str]]) -> list[str]:
    """Every function that does what concept KEY asks (what a locked guess is revealed against)."""
    if key == "step_calls":
        wanted = calls_between(vllmsrc.resolve(inst, ANCHOR)[0])
        return [sym for sym, name, _ in index if name in wanted]
    return [sym for sym, _, src in index if does_it(BY_KEY[key], src)]


@criterion("predictions")
def predictions(ctx):
    """Each locked guess (ctx.inputs["predictions"]: salted hashes, passed in by the parent) is
    tested against every function that does the thing; the right ones go back in
    metrics["revealed"], and the parent stores them as revealed after checking them again."""
    inst = _vllm(ctx)
    locked = ctx.inputs.get("predictions") or {}
    if not locked:
        return "none locked (lock guesses before reading: z2v contrib predict code-map KEY SYMBOL)"
    results, index = {}, functions(inst)
    for name, row in locked.items():
        if name not in BY_KEY:
            continue
        results[name] = next((s for s in candidates(inst, name, index) if predictions_rule.matches(row, s)), None)
    ctx.metrics["predictions"] = {k: bool(v) for k, v in results.items()}
    ctx.metrics["revealed"] = {k: v for k, v in results.items() if v}
    lines = [f"{k}: {'right, ' + v if v else 'not one of the functions that do it'}" for k, v in results.items()]
    return f"{sum(1 for v in results.values() if v)}/{len(results)} predictions right\n" + "\n".join(lines)
