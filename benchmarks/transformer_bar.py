"""Where the transformer lab's training bar comes from: the "check" recipe's full-split val loss
for every correct design under tests/lab_cases/transformer/ (and the reference), over seeds,
next to buggy models that train.

    PYTHONPATH=src python benchmarks/transformer_bar.py --seeds 3 --jobs 16 --json out.json
    PYTHONPATH=src python benchmarks/transformer_bar.py --only head-list --seeds 1   # spot check

Each training runs in its own process with one CPU thread, exactly as `z2v check transformer`
trains (float32, the same recipe), so N cores run N trainings at once. Mistakes are built from
cases.toml's edits. It prints one row per run, then min / median / max over the correct ones
and the best (lowest) val loss among the mistakes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
CASES = ROOT / "tests" / "lab_cases" / "transformer"
REFERENCE = ROOT / "src" / "zero2vllm" / "labs" / "transformer" / "reference"
# mistakes that can train (the others crash or are caught long before training matters)
TRAINING_MISTAKES = ("no-causal-mask", "heads-not-split", "no-scaling", "no-position-embedding",
                     "no-layernorm", "no-final-layernorm", "no-residual", "softmax-over-queries",
                     "mask-one-step-ahead", "no-residual-mha", "no-position-einsum",
                     "heads-view-without-transpose", "scale-by-n-embd", "one-head-in-the-list")


def materialise(base: str, edits: list[dict], dest: Path) -> Path:
    src = REFERENCE if base == "reference" else CASES / base
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "model.py", dest / "model.py")
    for edit in edits:
        file = dest / edit["file"]
        text = file.read_text()
        if text.count(edit["old"]) != 1:
            raise SystemExit(f"{base}: {edit['old']!r} does not occur exactly once")
        file.write_text(text.replace(edit["old"], edit["new"]))
    return dest


def candidates(workdir: Path, only: list[str] | None, mistakes: bool) -> list[tuple[str, str, Path]]:
    """(kind, name, directory) for the reference, each correct design and chosen mistakes."""
    out = [("correct", "reference", REFERENCE)]
    out += [("correct", d.name, d) for d in sorted((CASES / "correct").iterdir()) if d.is_dir()]
    if mistakes:
        cases = tomllib.loads((CASES / "cases.toml").read_text())
        for m in cases["mistake"]:
            if m["name"] in TRAINING_MISTAKES:
                out.append(("mistake", m["name"],
                            materialise(m["base"], m.get("edit", []), workdir / m["name"])))
    return [c for c in out if not only or c[1] in only]


def train_one(job: tuple[str, str, str, int, dict]) -> dict:
    kind, name, directory, seed, overrides = job
    import torch

    torch.set_num_threads(1)
    from zero2vllm.labs.framework import load_module
    from zero2vllm.labs.transformer.reference import train

    module = load_module(Path(directory) / "model.py", name=f"z2v_bar_{name.replace('-', '_')}")
    cfg = train.preset("check", seed=seed, **overrides)
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = train.train(cfg, module=module)
    return dict(kind=kind, name=name, seed=seed, val=round(result.final_val, 4),
                steps=result.steps, wall_s=round(time.perf_counter() - t0, 1),
                cpu_s=round(time.process_time() - cpu0, 1))


def parse_overrides(items: list[str]) -> dict:
    import ast

    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def summary(rows: list[dict]) -> dict:
    correct = sorted(r["val"] for r in rows if r["kind"] == "correct")
    buggy = [r for r in rows if r["kind"] == "mistake"]
    out = {}
    if correct:
        out.update(correct_min=correct[0], correct_median=statistics.median(correct),
                   correct_max=correct[-1], correct_runs=len(correct))
    if buggy:
        best = min(buggy, key=lambda r: r["val"])
        out.update(best_mistake=best["name"], best_mistake_val=best["val"])
    return out


def markdown(result: dict) -> str:
    """One row per design or mistake (val loss min / median / max over its seeds)."""
    by: dict[tuple[str, str], list[float]] = {}
    for r in result["rows"]:
        by.setdefault((r["kind"], r["name"]), []).append(r["val"])
    lines = ["| kind | design or mistake | seeds | val loss min / median / max |", "|---|---|---|---|"]
    for (kind, name), vals in sorted(by.items(), key=lambda kv: (kv[0][0], statistics.median(kv[1]))):
        vals.sort()
        lines.append(f"| {kind} | {name} | {len(vals)} | {vals[0]:.3f} / "
                     f"{statistics.median(vals):.3f} / {vals[-1]:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--only", nargs="*", help="names of designs or mistakes to run")
    parser.add_argument("--no-mistakes", action="store_true")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override fields of the check recipe (e.g. max_steps=300)")
    parser.add_argument("--json", type=Path, help="write rows and summary here")
    parser.add_argument("--table", type=Path, help="print the Markdown table of a saved --json")
    args = parser.parse_args(argv)
    if args.table:
        result = json.loads(args.table.read_text())
        print(markdown(result))
        print(json.dumps(result["summary"]))
        return
    overrides = parse_overrides(args.set)
    with tempfile.TemporaryDirectory() as tmp:
        found = candidates(Path(tmp), args.only, not args.no_mistakes)
        jobs = [(k, n, str(d), 1337 + s, overrides) for k, n, d in found for s in range(args.seeds)]
        t0 = time.perf_counter()
        with ProcessPoolExecutor(args.jobs) as pool:
            rows = []
            for row in pool.map(train_one, jobs):
                rows.append(row)
                print(f"{row['kind']:8} {row['name']:28} seed {row['seed']}  val {row['val']:.4f}  "
                      f"{row['steps']} steps  {row['wall_s']:.1f} s wall  {row['cpu_s']:.1f} s cpu",
                      flush=True)
    result = dict(machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                  torch=__import__("torch").__version__, overrides=overrides,
                  seconds=round(time.perf_counter() - t0, 1), rows=rows, summary=summary(rows))
    print(json.dumps(result["summary"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
