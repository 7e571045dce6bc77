"""`z2v profile ...`: measuring instruments for the learner's models.

`profile` is a click group so other modules can attach subcommands:
    from zero2vllm.commands.profile import profile
    profile.add_command(my_command)
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from zero2vllm.commands._app import Z2VError, pass_app


@click.group()
def profile() -> None:
    """Measure memory and time of a model as its context grows."""


def parse_lengths(text: str) -> list[int]:
    try:
        lengths = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise Z2VError(f"--lengths {text!r}: give positive integers separated by commas, e.g. 128,256,512") from None
    if not lengths or any(n < 1 for n in lengths):
        raise Z2VError(f"--lengths {text!r}: give positive integers separated by commas, e.g. 128,256,512")
    return sorted(set(lengths))


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise Z2VError(f"--device {device}: no CUDA GPU here (torch {torch.__version__}); use --device cpu")
    return device


def _is_learner_code(spec: str) -> bool:
    p = Path(spec).expanduser()
    return (p.is_file() and p.suffix == ".py") or (
        p.is_dir() and (p / "model.py").exists() and not (p / "config.json").exists())


def load_kv_model(spec: str, device: str, dtype: str | None, max_len: int):
    """An adapter for --model: reference | learner | FILE.py | smollm2 | PATH | hf-id."""
    from zero2vllm.instruments import kvprofile

    if spec in ("reference", "learner") or _is_learner_code(spec):
        from zero2vllm.labs.kv_cache.profile import LabModelError, kv_model_for_profile

        try:
            return kv_model_for_profile(spec, device=device, dtype=dtype, max_len=max_len)
        except LabModelError as exc:
            raise Z2VError(str(exc)) from None
    from zero2vllm.models import ModelError, load_model

    try:
        model, _tok, folder = load_model(spec, device=device, dtype=dtype, tokenizer=False)
    except ModelError as exc:
        raise Z2VError(str(exc)) from None
    name = "smollm2" if spec == "smollm2" else Path(folder).name
    return kvprofile.HFKVModel(model, name)


@profile.command("kv")
@click.option("--model", "model_spec", default="smollm2", show_default=True,
              help="reference | learner (./kv-cache) | your model.py | smollm2 | a Hugging Face "
                   "model folder | a cached HF id")
@click.option("--lengths", default="128,256,512,1024", show_default=True,
              help="Context lengths to measure, comma separated.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None,
              help="Weights and cache dtype (default: the model's own).")
@click.option("--decode-steps", default=5, show_default=True, type=click.IntRange(1, 100),
              help="Decode steps timed at each length (the median is reported).")
@click.option("--threads", default=None, type=click.IntRange(1, 256), help="torch CPU threads.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the CSV, JSON and PNG go (default: <data dir>/profiles).")
@pass_app
def profile_kv_cmd(app, model_spec, lengths, device, dtype, decode_steps, threads, out_dir):
    """KV-cache bytes, memory and per-token time against context length.

    Measures the cache tensors themselves and checks them against
    2 x layers x kv_heads x head_dim x bytes x tokens, fits the line, and writes a table,
    a CSV, a JSON and a PNG plot. Recorded as evidence for the kv-cache lab.
    """
    lengths_list = parse_lengths(lengths)
    import torch

    from zero2vllm.instruments import kvprofile
    from zero2vllm.paths import data_dir

    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device)
    kvm = load_kv_model(model_spec, device, dtype, max_len=max(lengths_list) + decode_steps + 1)
    if kvm.max_len and max(lengths_list) + decode_steps > kvm.max_len:
        raise Z2VError(
            f"--lengths: {max(lengths_list)} (+{decode_steps} decode steps) is over {kvm.name}'s "
            f"context of {kvm.max_len} tokens"
        )
    click.echo(f"Profiling {kvm.name} on {device} at {', '.join(map(str, lengths_list))} tokens...", err=True)
    started = time.perf_counter()
    prof = kvprofile.profile_kv(kvm, lengths_list, decode_steps=decode_steps,
                                progress=lambda m: click.echo(m, err=True))
    click.echo(kvprofile.format_table(prof))

    out_dir = out_dir or data_dir() / "profiles"
    if model_spec in ("reference", "smollm2"):
        short = model_spec
    elif model_spec == "learner" or _is_learner_code(model_spec):
        short = "learner"
    else:
        short = kvm.name
    stem = f"kv-{_slug(short)}-{device.replace(':', '')}-{time.strftime('%Y%m%d-%H%M%S')}"
    csv_path = kvprofile.write_csv(prof, out_dir / f"{stem}.csv")
    json_path = kvprofile.write_json(prof, out_dir / f"{stem}.json")
    png_path = kvprofile.write_plot(prof, out_dir / f"{stem}.png")
    click.echo(f"\nwrote {csv_path}\n      {json_path}\n      {png_path}")

    from zero2vllm.tracker import evidence

    evidence.record(app.store, {
        "lab": "kv-cache", "kind": "profile", "passed": prof.all_match,
        "duration_s": time.perf_counter() - started, "code_path": model_spec,
        "criteria": [{
            "name": "cache bytes equal the formula at every length",
            "passed": prof.all_match,
            "detail": f"slope {prof.fit_slope:,.1f} B/token, formula {prof.shape.bytes_per_token:,} B/token",
        }],
        "metrics": {
            "model": kvm.name, "device": device, "dtype": prof.shape.dtype,
            "bytes_per_token": prof.shape.bytes_per_token, "fit_slope": prof.fit_slope,
            "fit_intercept": prof.fit_intercept, "fit_r2": prof.fit_r2,
            "lengths": [r.tokens for r in prof.rows],
            "decode_ms": [round(r.decode_ms, 3) for r in prof.rows],
            "prefill_ms": [round(r.prefill_ms, 3) for r in prof.rows],
        },
        "artifacts": [str(csv_path), str(json_path), str(png_path)],
    })


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-") or "model"


def register(group: click.Group) -> None:
    group.add_command(profile)
