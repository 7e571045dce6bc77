"""Tensor parallelism's pieces: the process group of the ranks, and the linear layers split across them.

Megatron-LM's recipe, as vLLM implements it in vllm/model_executor/layers/linear.py:

- `ColumnParallelLinear` splits a weight by output columns: rank r computes its slice of the
  outputs from the whole input, with no communication. q/k/v (`QKVParallelLinear`: each rank
  keeps whole heads, its share of the query heads and of the KV heads) and gate/up
  (`MergedColumnParallelLinear`) are split this way.
- `RowParallelLinear` splits a weight by input rows: rank r multiplies its slice of the input (the
  heads, or the MLP's intermediate features, that rank r computed) by its rows, and an all-reduce
  sums the partial products. o_proj and down_proj are split this way, so a layer has exactly two
  all-reduces: one after attention, one after the MLP.

Each rank therefore holds 1/N of every attention and MLP weight and of the KV pool (its KV heads).
The embedding and the LM head stay whole on every rank (vLLM splits them by vocabulary; for the
models here they are a small part of the weights, and whole they need no extra gather).

`TPGroup` stands for vLLM's `GroupCoordinator` (vllm/distributed/parallel_state.py): this rank,
the number of ranks, and the process group (NCCL on GPUs, gloo on CPUs) of the all-reduces. It
is passed to the layers, not kept global as vLLM's `get_tp_group()` is, so a TP=1 engine and a
TP=2 engine's rank 0 can live in one process.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@dataclass
class TPGroup:
    rank: int = 0
    size: int = 1
    group: object = None  # the torch.distributed process group of the all-reduces


def init_tp_group(rank: int, size: int, port: int, device: torch.device) -> TPGroup:
    """Join the ranks' process group on localhost (rank 0 is the engine's process)."""
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # stay on the loopback interface
    # the timeout bounds the wait for the other ranks at start-up (each loads its weights) and in a step
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=size, timeout=datetime.timedelta(minutes=10))
    return TPGroup(rank, size, dist.group.WORLD)


class ReplicatedLinear(nn.Linear):
    """nn.Linear without bias, plus an optional oneDNN-prepacked copy of the weight for the CPU.

    MKL's sgemm is slow for the few rows of a decode step; oneDNN with the weight reordered once
    into its blocked layout (what vLLM's CPU backend does) is faster (docs/history.md), and for at
    most 16 rows the C++ kernel reading the weight as panels is faster still (docs/benchmarks.md).
    """

    # oneDNN's blocked copy of the weight; cpu_kernels' C++ matmul for steps of at most 16 rows,
    # bound to this weight's panels (model_runner sets both on the CPU)
    packed = small_linear = None

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x):
        if self.small_linear is not None and x.shape[0] <= 16:
            return self.small_linear(x)
        return F.linear(x, self.weight) if self.packed is None else \
            torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")

    def weight_loader(self, loaded: torch.Tensor, shard: int = 0) -> None:
        self.weight.data.copy_(loaded)


class ColumnParallelLinear(ReplicatedLinear):
    """Outputs split across ranks. `output_sizes` are the unsplit pieces fused into this one weight
    (q, k, v or gate, up); each is split separately, so a rank keeps [q_r | k_r | v_r]."""

    def __init__(self, in_features: int, output_sizes: list[int], tp: TPGroup):
        sizes = [s // tp.size for s in output_sizes]
        super().__init__(in_features, sum(sizes))
        self.output_sizes, self.tp = sizes, tp

    def weight_loader(self, loaded: torch.Tensor, shard: int = 0) -> None:
        """Copy rank r's rows of piece `shard` (a whole Hugging Face q_proj, k_proj, ...) into place."""
        n, start = self.output_sizes[shard], sum(self.output_sizes[:shard])
        self.weight.data[start:start + n].copy_(loaded.narrow(0, self.tp.rank * n, n))


class MergedColumnParallelLinear(ColumnParallelLinear):
    """gate_proj and up_proj in one weight, each split by columns."""


class QKVParallelLinear(ColumnParallelLinear):
    """q_proj, k_proj, v_proj in one weight; each rank keeps num_heads / N query heads and
    num_kv_heads / N KV heads, whole heads, so attention runs on each rank with no communication."""

    def __init__(self, hidden_size: int, head_dim: int, num_heads: int, num_kv_heads: int, tp: TPGroup):
        super().__init__(hidden_size, [num_heads * head_dim, num_kv_heads * head_dim, num_kv_heads * head_dim], tp)


class RowParallelLinear(ReplicatedLinear):
    """Inputs split across ranks; each rank's partial product is summed by one all-reduce."""

    def __init__(self, in_features: int, out_features: int, tp: TPGroup):
        super().__init__(in_features // tp.size, out_features)
        self.tp = tp

    def weight_loader(self, loaded: torch.Tensor, shard: int = 0) -> None:
        n = self.in_features
        self.weight.data.copy_(loaded.narrow(1, self.tp.rank * n, n))

    def forward(self, x):
        out = super().forward(x)
        if self.tp.size > 1:
            dist.all_reduce(out, group=self.tp.group)
        return out
