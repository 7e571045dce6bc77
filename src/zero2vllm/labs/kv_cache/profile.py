"""The kv-cache lab's models for `z2v profile kv`: the reference GPT and the learner's own.

Weights are random: the cache's size and the time per token do not depend on them. The shape
is week 1's (4 layers, 4 heads, 128 wide, 65 characters), with block_size stretched to the
longest length profiled (the learned position table has one row per position).
"""

from __future__ import annotations

from pathlib import Path


class LabModelError(Exception):
    """The learner's model cannot be loaded or lacks the kv-cache interface; says why."""


WEEK1_SHAPE = dict(vocab_size=65, n_layer=4, n_head=4, n_embd=128, dropout=0.0)


def _module(spec: str):
    from zero2vllm.labs import get_lab
    from zero2vllm.labs.framework import CheckFailed, entry_file, load_module

    if spec == "reference":
        from zero2vllm.labs.kv_cache.reference import model

        return model, "reference GPT"
    lab = get_lab("kv-cache")
    if spec == "learner":
        from zero2vllm.labs.workspace import resolve_check_path

        path = resolve_check_path(lab, None)
    else:
        path = Path(spec).expanduser()
    file = entry_file(path, "model.py")
    if not file.exists():
        raise LabModelError(f"{file} does not exist; run `z2v lab init kv-cache` or pass your model.py")
    try:
        return load_module(file, "z2v_learner_kv"), f"your GPT ({file})"
    except CheckFailed as exc:
        raise LabModelError(exc.message) from None
    except Exception as exc:
        raise LabModelError(f"{file} does not import: {type(exc).__name__}: {exc}") from None


def kv_model_for_profile(spec: str, *, device: str = "cpu", dtype: str | None = None, max_len: int = 1024):
    import torch

    from zero2vllm.instruments.kvprofile import CallableKVModel, KVShape

    mod, name = _module(spec)
    for attr in ("GPTConfig", "GPT", "KVCache"):
        if not hasattr(mod, attr):
            raise LabModelError(f"{name} has no {attr}: profile needs the kv-cache lab's interface "
                                "(see `z2v lab init kv-cache`)")
    cfg = mod.GPTConfig(block_size=max_len, **WEEK1_SHAPE)
    torch.manual_seed(0)
    model = mod.GPT(cfg).eval()
    torch_dtype = getattr(torch, dtype) if dtype else torch.float32
    model.to(device=device, dtype=torch_dtype)
    shape = KVShape(layers=cfg.n_layer, kv_heads=cfg.n_head, head_dim=cfg.n_embd // cfg.n_head,
                    dtype_bytes=torch.empty((), dtype=torch_dtype).element_size(),
                    dtype=str(torch_dtype).removeprefix("torch."))
    kvm = CallableKVModel(model, name, shape, lambda: mod.KVCache(cfg), max_len=max_len,
                          vocab_size=cfg.vocab_size)
    try:  # fail early, with a clear message, if the cache is still a TODO
        from zero2vllm.instruments.kvprofile import tensors_bytes

        with torch.no_grad():
            _, cache = kvm.forward(torch.zeros(1, 2, dtype=torch.long, device=device), kvm.new_cache())
        if tensors_bytes(cache) == 0:
            raise LabModelError(f"{name}: model(idx, kv_cache=cache) put nothing into the cache; "
                                "fill in the cache TODOs first")
    except NotImplementedError as exc:
        raise LabModelError(f"{name}: the KV cache is not written yet ({exc})") from None
    except TypeError as exc:
        raise LabModelError(f"{name}: model(idx, kv_cache=cache) failed: {exc}") from None
    return kvm
