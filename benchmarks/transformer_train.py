"""Time to a validation loss on tiny Shakespeare with the transformer lab's reference trainer.

    PYTHONPATH=src python benchmarks/transformer_train.py --device cpu                 # target 1.88
    PYTHONPATH=src python benchmarks/transformer_train.py --device cuda --target 1.47 --baseline

Trains zero2vllm's reference GPT (src/zero2vllm/labs/transformer/reference/) with a preset
recipe and stops as soon as the loss on the WHOLE validation split (111,539 predictions) is at
or below the target. Reports time to target (training wall time, evaluations included; a
one-off torch.compile warm-up runs before the clock starts and is reported on its own),
training tokens/s (evaluations excluded) and the best val loss. `--baseline` also runs
nanoGPT's own hyper-parameters for that device with the same engine, one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from zero2vllm.labs.transformer.reference import train  # noqa: E402

DEFAULTS = {  # device: (preset, baseline preset, target, goal seconds)
    "cpu": ("cpu", "nanogpt-cpu", 1.88, 90.0),
    "cuda": ("gpu", "nanogpt", 1.47, 15.0),
}


def machine(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    load = ", load average {:.1f}".format(os.getloadavg()[0]) if hasattr(os, "getloadavg") else ""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
           f"{torch.get_num_threads()} threads{load} (torch {torch.__version__})"


OVERRIDABLE = ("batch_size", "lr", "min_lr", "warmup_steps", "decay_steps", "dropout", "eval_every",
               "eval_from", "n_layer", "n_head", "n_embd", "block_size", "weight_decay", "beta2",
               "muon_lr", "optimizer")


def run_one(name: str, args, target: float, data) -> dict:
    cfg = train.preset(name, device=args.device, target=target, max_steps=args.max_steps,
                       time_budget_s=args.time_budget, seed=args.seed)
    if args.no_compile:
        cfg.compile = False
    for key in OVERRIDABLE:  # --batch-size 128 --lr 2e-3 ... for trying recipes without edits
        value = getattr(args, key)
        if value is not None and name == args.main_preset:
            setattr(cfg, key, value)
    if args.smoke:  # a seconds-long run of the same code path, to test the script on a laptop
        cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size, cfg.batch_size = 2, 2, 32, 32, 8
        cfg.max_steps, cfg.eval_from, cfg.eval_every, cfg.warmup_steps = 30, 10, 10, 5
        cfg.decay_steps = 30
    opt = f"muon {cfg.muon_lr:g} + adamw {cfg.lr:g}" if cfg.optimizer == "muon" else f"adamw {cfg.lr:g}"
    print(f"\n== {name}: {cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} wide, block "
          f"{cfg.block_size}, batch {cfg.batch_size}, {opt}, dropout {cfg.dropout}, "
          f"bf16 {cfg.bf16}, compile {cfg.compile}{' (' + cfg.compile_mode + ')' if cfg.compile and cfg.compile_mode else ''}, "
          f"up to {cfg.max_steps} steps", flush=True)
    t0 = time.perf_counter()
    result = train.train(cfg, data=data, on_eval=lambda s, v: print(
        f"   step {s:5d}  val {v:.4f}", flush=True))
    total = time.perf_counter() - t0
    params = sum(p.numel() for p in result.model.parameters())
    row = {
        "recipe": name, "device": args.device, "machine": machine(args.device),
        "params": params, "target": target,
        "reached": result.target_step is not None,
        "steps_to_target": result.target_step,
        "seconds_to_target": None if result.target_seconds is None else round(result.target_seconds, 2),
        "train_seconds": round(result.train_seconds, 2),
        "eval_seconds": round(result.eval_seconds, 2),
        "compile_warmup_seconds": round(result.warmup_seconds, 2),
        "wall_seconds": round(total, 2),
        "tokens_per_s": round(result.tokens_per_s),
        "ms_per_step": round(1000 * (result.train_seconds - result.eval_seconds) / max(1, result.steps), 2),
        "steps": result.steps, "best_val": round(result.best_val, 4),
        "final_val": round(result.final_val, 4), "stop": result.stop_reason,
        "config": {k: v for k, v in vars(cfg).items()},
    }
    print(f"   {result.stop_reason}; {row['train_seconds']} s training "
          f"(+{row['compile_warmup_seconds']} s compile warm-up), {row['tokens_per_s']:,} tokens/s",
          flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--target", type=float, help="val loss to reach (cpu 1.88, cuda 1.47)")
    parser.add_argument("--goal", type=float, help="seconds the main recipe should take (cpu 90, cuda 15)")
    parser.add_argument("--preset", help=f"recipe (default: per device); one of {', '.join(train.PRESETS)}")
    parser.add_argument("--baseline", action="store_true", help="also run nanoGPT's recipe")
    parser.add_argument("--also", default="", help="more recipes to run after it, comma-separated "
                        "(e.g. gpu-adamw)")
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--time-budget", type=float, help="stop training after this many seconds")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--threads", type=int, help="CPU threads (default: one per core but one)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 30 steps: test the script")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    for key in OVERRIDABLE:
        kind = str if key == "optimizer" else int if key in ("batch_size", "warmup_steps", "decay_steps", "eval_every", "eval_from",
                              "n_layer", "n_head", "n_embd", "block_size") else float
        parser.add_argument("--" + key.replace("_", "-"), type=kind,
                            help="override the main recipe's " + key)
    args = parser.parse_args()

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.device == "cpu":
        torch.set_num_threads(args.threads or train.default_threads())
    preset, baseline, target, goal = DEFAULTS[args.device]
    preset = args.preset or preset
    args.main_preset = preset
    target = args.target if args.target is not None else target
    goal = args.goal if args.goal is not None else goal
    if args.device == "cuda":
        torch.set_float32_matmul_precision("high")

    data = train.load_data(args.device)
    print(f"tiny Shakespeare: {len(data.train):,} train / {len(data.val):,} val tokens, "
          f"vocab {data.vocab_size}; machine: {machine(args.device)}")
    rows = [run_one(preset, args, target, data)]
    for extra in [n.strip() for n in args.also.split(",") if n.strip()]:
        rows.append(run_one(extra, args, target, data))
    if args.baseline:
        rows.append(run_one(baseline, args, target, data))

    print(f"\ntarget: val loss <= {target} on the full val split; goal for {preset}: <= {goal:g} s; "
          f"machine: {machine(args.device)}")
    head = ("recipe", "params", "steps", "s to target", "train s", "eval s", "compile s",
            "ms/step", "tokens/s", "best val", "verdict")
    table = []
    for r in rows:
        if not r["reached"]:
            verdict = "not reached"
        elif r["recipe"] != preset:
            verdict = "reached"
        else:
            verdict = "goal met" if r["seconds_to_target"] <= goal else "too slow"
        table.append((r["recipe"], f"{r['params'] / 1e6:.2f}M",
                      str(r["steps_to_target"] or r["steps"]),
                      "-" if r["seconds_to_target"] is None else f"{r['seconds_to_target']:.2f}",
                      f"{r['train_seconds']:.2f}", f"{r['eval_seconds']:.2f}",
                      f"{r['compile_warmup_seconds']:.1f}", f"{r['ms_per_step']:.2f}",
                      f"{r['tokens_per_s']:,}", f"{r['best_val']:.4f}", verdict))
    widths = [max(len(x[i]) for x in table + [head]) for i in range(len(head))]
    for line in [head] + table:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    main_row = rows[0]
    return 0 if main_row["reached"] and main_row["seconds_to_target"] <= goal else 1


if __name__ == "__main__":
    sys.exit(main())
