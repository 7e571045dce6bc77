"""`z2v lab run transformer`: train the learner's model (or the reference) on tiny Shakespeare,
with a progress bar, then evaluate on the full val split, plot the loss curve, save a
checkpoint in the data directory and print a sample."""

from __future__ import annotations

import math
import time
from datetime import datetime
from pathlib import Path
from typing import Callable


class RunError(Exception):
    """A problem to report in one line (no CUDA, code that does not import or crashes)."""


def _load(code: Path | None):
    from zero2vllm.labs.framework import CheckFailed, describe_exception, entry_file, load_module
    from zero2vllm.labs.transformer.reference import train

    if code is None:
        return train.reference_module(), "reference"
    file = entry_file(code.resolve(), "model.py")
    try:
        return load_module(file), str(file)
    except CheckFailed as exc:
        raise RunError(exc.message) from None
    except BaseException as exc:  # noqa: BLE001 - the learner's import-time error
        raise RunError(f"{file} does not import: " + describe_exception(exc, file.parent)
                       .replace("\n", " ")) from None


def plot_losses(history: list[dict], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_pts = [(h["step"], h["train_loss"]) for h in history if "train_loss" in h]
    val_pts = [(h["step"], h["val_loss"]) for h in history if "val_loss" in h]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train_pts:
        ax.plot(*zip(*train_pts), label="train loss (moving average)", lw=1.2)
    if val_pts:
        ax.plot(*zip(*val_pts), "o-", label="val loss (full split)", lw=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def run(*, code: Path | None, device: str, steps: int | None, out_dir: Path,
        echo: Callable[[str], None]) -> dict:
    import torch

    from zero2vllm.labs.transformer.reference import train

    if device == "cuda" and not torch.cuda.is_available():
        raise RunError(f"--device cuda, but this torch ({torch.__version__}) sees no CUDA device; "
                       "use --device cpu")
    if device == "cpu":  # leave a core free: busy 2-core machines collapse with 2 spinning threads
        import os

        torch.set_num_threads(max(1, min(8, (os.cpu_count() or 2) - 1)))
    module, label = _load(code)
    preset = "cpu" if device == "cpu" else "gpu"
    cfg = train.preset(preset, max_steps=steps, device=device)
    if code is not None:
        cfg.compile = False  # the learner's code: eager, so errors point at their lines
    if device == "cpu":  # about five full-split evaluations make the curve; each costs seconds
        cfg.eval_from, cfg.eval_every = 0, max(10, cfg.max_steps // 5)
    data = train.load_data(device)
    echo(f"training {label} on tiny Shakespeare ({device}): {cfg.n_layer} layers, "
         f"{cfg.n_head} heads, {cfg.n_embd} wide, block {cfg.block_size}, batch {cfg.batch_size}, "
         f"{cfg.max_steps} steps")

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    started = time.perf_counter()
    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]}"), TextColumn("val {task.fields[val]}"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("train", total=cfg.max_steps, loss="-", val="-")

        def on_step(step: int, loss: float) -> None:
            bar.update(task, completed=step, loss=f"{loss:.3f}")

        def on_eval(step: int, val: float) -> None:
            bar.update(task, val=f"{val:.4f}")

        try:
            result = train.train(cfg, module=module, data=data, on_step=on_step, on_eval=on_eval,
                                 keep_best=True)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - the learner's model failed during training
            from zero2vllm.labs.framework import describe_exception

            root = code.resolve() if code else None
            raise RunError("training failed: " + describe_exception(exc, root)
                           .replace("\n", " ")) from None
    duration = time.perf_counter() - started
    final_val = result.final_val
    if result.best_state is not None and result.best_step != result.steps:
        # tiny Shakespeare overfits: keep (and sample from) the best evaluated weights
        result.model.load_state_dict(result.best_state)
        result.final_val = result.best_val
        echo(f"val loss was lowest at step {result.best_step} ({result.best_val:.4f}; "
             f"{final_val:.4f} at the end): keeping those weights")

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}-{'reference' if code is None else 'mine'}-{device}"
    ckpt = train.save_checkpoint(out_dir / f"{name}.pt", result, cfg, data)
    title = f"{label if code is None else Path(label).parent.name}: val {result.final_val:.4f} after {result.steps} steps"
    png = plot_losses(result.history, out_dir / f"{name}-loss.png", title)
    text = train.sample(result.model, data, max_new_tokens=400)

    echo(f"\nval loss {result.final_val:.4f} (full val split), {result.steps} steps, "
         f"{result.train_seconds:.1f} s, {result.tokens_per_s:,.0f} tokens/s")
    echo(f"loss curve: {png}")
    echo(f"checkpoint: {ckpt}")
    echo("\nsample (temperature 0.8, top-k 40):\n" + "-" * 60 + f"\n{text}\n" + "-" * 60)
    metrics = {"val_loss": round(result.final_val, 4), "best_val": round(result.best_val, 4),
               "final_val": round(final_val, 4), "best_step": result.best_step,
               "steps": result.steps, "train_seconds": round(result.train_seconds, 2),
               "tokens_per_s": round(result.tokens_per_s), "device": device, "preset": preset}
    return {"passed": math.isfinite(result.final_val), "metrics": metrics,
            "artifacts": [str(png), str(ckpt)], "duration_s": round(duration, 2)}
