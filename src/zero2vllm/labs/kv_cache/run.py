"""`z2v lab run kv-cache [--code DIR]`: profile the KV cache of your GPT (default: the reference).

The same measurement as `z2v profile kv --model ...`: cache bytes against the formula, memory
and the time of the next token with and without the cache, at 64 to 1,024 tokens.
"""

from __future__ import annotations

import time
from pathlib import Path

LENGTHS = [64, 128, 256, 512, 1024]


class RunError(Exception):
    """One-line problems: shown as `Error: ...`, exit 2."""


def run(*, code: Path | None, device: str, steps: int | None, out_dir: Path, echo) -> dict:
    from zero2vllm.instruments import kvprofile
    from zero2vllm.labs.kv_cache.profile import LabModelError, kv_model_for_profile

    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RunError("--device cuda: no CUDA GPU here")
    steps = steps or 5
    try:
        kvm = kv_model_for_profile(str(code) if code else "reference", device=device,
                                   max_len=max(LENGTHS) + steps + 1)
    except LabModelError as exc:
        raise RunError(str(exc)) from None
    started = time.perf_counter()
    prof = kvprofile.profile_kv(kvm, LENGTHS, decode_steps=steps, progress=echo)
    echo(kvprofile.format_table(prof))
    stem = out_dir / f"kv-{'learner' if code else 'reference'}-{time.strftime('%Y%m%d-%H%M%S')}"
    artifacts = [kvprofile.write_csv(prof, Path(f"{stem}.csv")),
                 kvprofile.write_json(prof, Path(f"{stem}.json")),
                 kvprofile.write_plot(prof, Path(f"{stem}.png"))]
    for p in artifacts:
        echo(f"wrote {p}")
    return {
        "passed": prof.all_match,
        "duration_s": time.perf_counter() - started,
        "metrics": {"bytes_per_token": prof.shape.bytes_per_token, "fit_slope": prof.fit_slope,
                    "lengths": LENGTHS, "decode_ms": [round(r.decode_ms, 3) for r in prof.rows],
                    "prefill_ms": [round(r.prefill_ms, 3) for r in prof.rows]},
        "artifacts": artifacts,
    }
