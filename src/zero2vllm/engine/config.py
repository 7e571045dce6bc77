"""What the engine needs to know: the model's shape (from config.json) and the engine's budgets.

Two dataclasses, no logic beyond reading a Hugging Face `config.json` and filling defaults, so a
reader sees every knob in one place. The knobs mirror vLLM's names (`block_size`,
`max_num_seqs`, `max_num_batched_tokens`, `enable_prefix_caching`, `enforce_eager`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ModelConfig:
    """The shape of a Llama-architecture model (Llama 2/3, SmolLM2, TinyLlama, ...)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # Llama 3's "llama3" frequency scaling, if any
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    eos_token_ids: tuple[int, ...] = ()

    @classmethod
    def from_dict(cls, cfg: dict) -> "ModelConfig":
        if cfg.get("model_type", "llama") != "llama":
            raise ValueError(f"the engine runs Llama-architecture models; this one is {cfg['model_type']}")
        # transformers 5 keeps rope_theta inside rope_parameters; older configs at the top level
        rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
        theta = cfg.get("rope_theta") or rope.get("rope_theta") or 10000.0
        scaling = rope if rope.get("rope_type", rope.get("type")) == "llama3" else None
        eos = cfg.get("eos_token_id")
        eos = tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,))
        heads = cfg["num_attention_heads"]
        return cls(
            vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"], num_layers=cfg["num_hidden_layers"],
            num_heads=heads, num_kv_heads=cfg.get("num_key_value_heads") or heads,
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
            rms_norm_eps=cfg.get("rms_norm_eps", 1e-5), rope_theta=float(theta), rope_scaling=scaling,
            max_position_embeddings=cfg.get("max_position_embeddings", 2048),
            tie_word_embeddings=cfg.get("tie_word_embeddings", False), eos_token_ids=eos,
        )

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ModelConfig":
        path = Path(folder) / "config.json"
        if not path.exists():
            raise FileNotFoundError(f"{folder}: no config.json; give a Hugging Face model folder")
        return cls.from_dict(json.loads(path.read_text()))


@dataclass
class EngineConfig:
    """Budgets and switches for one engine. Defaults suit the 2-core CPU; the GPU script raises them."""

    model: str = ""                      # a local Hugging Face folder ("" for random weights)
    device: str = "cpu"
    dtype: str = "float32"               # float32 on CPU (exact match with HF); bfloat16 on GPU
    block_size: int = 16                 # tokens per KV block (vLLM's default)
    num_kv_blocks: int | None = None     # None: as many as kv_cache_gb allows
    kv_cache_gb: float = 1.0
    max_num_seqs: int = 64               # most sequences in one step
    max_num_batched_tokens: int = 1024   # most tokens (prompt chunks + decodes) in one step
    max_model_len: int | None = None     # None: the model's max_position_embeddings (capped 4096)
    enable_prefix_caching: bool = True
    enforce_eager: bool = False          # on CUDA: False captures CUDA graphs for decode steps
    async_scheduling: bool = True        # with CUDA graphs: plan the next step while the GPU runs this one
    prepack_weights: bool = True         # on CPU: oneDNN-packed weights (faster small-batch matmuls)
    cpu_decode_kernel: bool = True       # on CPU: C++ decode attention, fused ops, few-row matmuls
    huge_pages: bool = False             # on CPU: weights and KV on 2 MB pages (faster decode, ~3 s more at start)
    num_threads: int | None = None       # torch CPU threads (None: all cores, shared by the ranks)
    tensor_parallel_size: int = 1        # ranks (processes) the model is split across (parallel.py)
    seed: int = 0
    model_config: ModelConfig | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.model_config is None:
            self.model_config = ModelConfig.from_folder(self.model)
        if self.max_model_len is None:
            self.max_model_len = min(self.model_config.max_position_embeddings, 4096)
        if self.block_size <= 0 or self.max_num_seqs <= 0 or self.max_num_batched_tokens <= 0:
            raise ValueError("block_size, max_num_seqs and max_num_batched_tokens must be positive")
        mc, tp = self.model_config, self.tensor_parallel_size
        if tp < 1 or mc.num_heads % tp or mc.num_kv_heads % tp or mc.intermediate_size % tp:
            raise ValueError(f"tensor_parallel_size must divide the model's {mc.num_heads} attention heads, "
                             f"{mc.num_kv_heads} KV heads and {mc.intermediate_size} MLP features; {tp} does not")
