"""Turns a scheduled batch into tensors, runs the model, samples one token per finished prompt.

It also owns the KV pool: one tensor [layers, num_blocks + 1, block_size, 2, kv_heads, head_dim]
sliced per layer. The extra last block is a spare that padding points at (padded block-table
entries, the padded rows of a CUDA graph), so no real block is ever written by mistake.

On CUDA, decode-only steps replay CUDA graphs captured at fixed batch sizes (as nano-vllm does):
a 1B model's decode step launches ~300 small kernels, and launching them from Python costs more
than running them. Graph replay needs fixed shapes, so the batch is padded to the next captured
size (padded rows write into the spare block and attend to one slot, so they stay finite) and
the attention reads block tables with the Triton kernel, which loops over each sequence's own
length. A graph holds the whole decode step, LM head and argmax included, and reads its inputs
from one buffer that a step fills on the host (pinned, with numpy) and copies over once.

`launch` starts such a step and returns before its tokens are read (async scheduling, driven by
llm_engine.py): a token the host does not know yet is read inside the graph from the previous
step's argmax, and the argmax is copied into one of two pinned buffers for the host to read later.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from .attention import AttnGroup, StepContext, build_group
from .config import EngineConfig
from .model import CPU_KERNELS, LlamaModel, load_weights, prepack_for_cpu
from .parallel import ReplicatedLinear, TPGroup
from .scheduler import ScheduledBatch
from .sequence import PENDING, Sequence


@dataclass
class Launched:
    """A decode step running on the GPU whose tokens the host has not read yet."""

    batch: ScheduledBatch
    seq_ids: list[int]            # the graph's rows, in order
    host: torch.Tensor            # pinned: the argmax lands here
    done: object                  # a CUDA event after that copy (None on the CPU)
    finished: list = field(default_factory=list)

    def tokens(self) -> dict[int, int]:
        if self.done is not None:
            self.done.synchronize()
        return dict(zip(self.seq_ids, self.host.tolist()))


def keep_freed_memory() -> None:
    """Have glibc's malloc keep freed activations for reuse instead of handing them back to the OS.

    A prompt step allocates and frees tensors of up to ~25 MB per op. By default malloc serves the
    main thread's large blocks with fresh mmap()s, or trims its heap after a free, so the next
    tensor page-faults all its memory in again. A prefill in the main thread (offline `generate`)
    gains most; the server's engine thread has its own malloc arena and gains less
    (docs/benchmarks.md, benchmarks/engine_prefill_malloc.py). Not glibc (macOS, musl): nothing to do.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: blocks under 32 MB (the most allowed) come from the heap
        libc.mallopt(-1, 1 << 30)   # M_TRIM_THRESHOLD: give the heap's top back only past 1 GB free
    except (OSError, AttributeError):
        pass


def use_huge_pages(kv_cache: torch.Tensor) -> int:
    """Back the weights and the KV pool with 2 MB pages (Linux transparent huge pages); bytes moved.

    A CPU decode step streams every weight and the batch's K/V from DRAM. With 4 KB pages that is a
    TLB miss every 4 KB; with 2 MB pages the same forward ran about 10% faster on the 2-core machine
    (docs/benchmarks.md). The weights are already loaded, so their mappings are collapsed into huge
    pages now (MADV_COLLAPSE, Linux 6.1+: ~2-3 s for SmolLM2); the pool, not yet touched, is only
    marked, and gets huge pages as it is zeroed. Elsewhere (no THP, older kernels, not Linux): 0.
    """
    huge, moved = 2 << 20, 0
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        with open("/proc/self/maps") as f:
            maps = [line.split() for line in f]
    except (OSError, AttributeError):
        return 0
    pool = kv_cache.data_ptr()
    for fields in maps:  # anonymous read-write mappings (malloc's heap and arenas, large tensors)
        if fields[1].startswith("rw") and (len(fields) == 5 or fields[5] == "[heap]"):
            first, last = (int(x, 16) for x in fields[0].split("-"))
            first, last = -(-first // huge) * huge, last // huge * huge
            if last - first >= 4 * huge and libc.madvise(first, last - first, 14) == 0:  # MADV_HUGEPAGE
                if not first <= pool < last and libc.madvise(first, last - first, 25) == 0:  # MADV_COLLAPSE
                    moved += last - first
    return moved


class ModelRunner:
    """One rank's runner: with tensor parallelism each rank has its own, on its slice of the model."""

    def __init__(self, config: EngineConfig, tp: TPGroup | None = None):
        self.config = cfg = config
        self.tp = tp = tp or TPGroup()
        mc = cfg.model_config
        heads, kv_heads = mc.num_heads // tp.size, mc.num_kv_heads // tp.size  # this rank's
        self.device, self.dtype = torch.device(cfg.device), getattr(torch, cfg.dtype)
        if self.device.type == "cpu":
            keep_freed_memory()
            if cfg.num_threads:
                torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(cfg.seed)
        with torch.device("meta"):
            self.model = LlamaModel(mc, tp)
        self.model.materialize(self.device, self.dtype, cfg.max_model_len).eval()
        if cfg.model:
            load_weights(self.model, cfg.model)
        else:
            self.model.init_random(cfg.seed)
        self.prepacked = self.device.type == "cpu" and cfg.prepack_weights and prepack_for_cpu(self.model)
        if self.device.type == "cpu" and cfg.cpu_decode_kernel and self.dtype == torch.float32:
            from .kernels.cpu_kernels import load_cpu_small_linear, panels

            if small := load_cpu_small_linear():  # decode steps' matmuls (copied before the huge pages below)
                for m in self.model.modules():
                    if isinstance(m, ReplicatedLinear) and m.out_features % 16 == 0:
                        m.small_linear = functools.partial(small, w=panels(m.weight), n=m.out_features)
        self.block_size = cfg.block_size
        self.num_blocks = cfg.num_kv_blocks or self._blocks_for(cfg.kv_cache_gb)
        self.pad_block = self.num_blocks  # the spare block
        self.kv_cache = torch.empty(mc.num_layers, self.num_blocks + 1, cfg.block_size, 2,
                                    kv_heads, mc.head_dim, dtype=self.dtype, device=self.device)
        if self.device.type == "cpu" and cfg.huge_pages:
            use_huge_pages(self.kv_cache)
        self.kv_cache.zero_()
        for i, layer in enumerate(self.model.layers):
            layer.self_attn.kv_cache = self.kv_cache[i]
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.decode_kernel, self.graphs, self.graph_pool = None, {}, None  # graphs: batch size -> CUDA graph
        if self.device.type == "cpu":  # C++ kernels (one process-wide set of fused ops: the last runner's choice)
            from .kernels.cpu_kernels import load_cpu_decode_kernel, load_cpu_fused_ops

            CPU_KERNELS.clear()
            if cfg.cpu_decode_kernel:
                self.decode_kernel = load_cpu_decode_kernel(self.kv_cache[0], heads)
                CPU_KERNELS.update(load_cpu_fused_ops())
        if self.device.type == "cuda":
            torch.backends.cuda.enable_cudnn_sdp(False)  # cuDNN plans each new prompt shape anew: tens of ms
            from .kernels.triton_attention import load_decode_kernel

            self.decode_kernel = load_decode_kernel(self.kv_cache[0], heads)
            if not cfg.enforce_eager:
                try:
                    self.capture_cuda_graphs()
                except Exception as exc:  # slower without graphs, but still correct
                    print(f"engine: CUDA graph capture failed ({exc!r}); running eagerly", file=sys.stderr)
                    self.graphs = {}

    def _blocks_for(self, gigabytes: float) -> int:
        mc = self.config.model_config
        kv_heads = mc.num_kv_heads // self.tp.size  # each rank holds its heads' slice of every block
        per_block = 2 * mc.num_layers * self.block_size * kv_heads * mc.head_dim * self.dtype.itemsize
        return max(1, int(gigabytes * 2**30 // per_block))

    # -- one step ----------------------------------------------------------------------------

    def _slots(self, seq: Sequence, start: int, end: int) -> list[int]:
        """Flat cache slots of positions [start, end), one block-sized run at a time."""
        bs, out = self.block_size, []
        for pos in range(start - start % bs, end, bs):
            base = seq.block_table[pos // bs] * bs
            out.extend(range(base + max(start, pos) - pos, base + min(end, pos + bs) - pos))
        return out

    def prepare(self, batch: ScheduledBatch):
        """Flat input tensors and the StepContext; also which rows produce a sampled token."""
        ids, positions, slots, logit_rows, sample_seqs = [], [], [], [], []
        groups = {True: ([], [], []), False: ([], [], [])}  # is_decode -> tables, q_starts, q_lens
        num_decode = 0
        for seq, n in batch.items:
            start = seq.num_computed_tokens
            is_decode = n == 1 and seq.num_uncomputed_tokens == 1
            num_decode += is_decode
            ids += seq.token_ids[start:start + n]
            positions += range(start, start + n)
            slots += self._slots(seq, start, start + n)
            tables, q_starts, q_lens = groups[is_decode]
            tables.append(seq.block_table)
            q_starts.append(start)
            q_lens.append(n)
            if start + n == len(seq):  # the prompt (or recompute) is done: this row's logits sample
                logit_rows.append(len(ids) - 1)
                sample_seqs.append(seq)
        decode, prefill = (
            build_group(*groups[d], self.block_size, self.pad_block, self.device, decode=d) if groups[d][0] else None
            for d in (True, False))
        to = lambda x: torch.tensor(x, dtype=torch.int64).to(self.device, non_blocking=True)  # noqa: E731
        ctx = StepContext(to(slots), num_decode, decode, prefill, self.decode_kernel)
        return to(ids), to(positions), ctx, to(logit_rows), sample_seqs

    @torch.inference_mode()
    def run(self, batch: ScheduledBatch, eos_token_ids: tuple[int, ...] = ()) -> dict[int, int]:
        """Compute the batch; return {seq_id: sampled token} for sequences that finished their prompt."""
        seqs = [seq for seq, _ in batch.items]
        if self._fits_graph(seqs):
            logits, greedy = self._replay_graph(seqs)  # decode only: forward, LM head and argmax in one graph
        else:
            input_ids, positions, ctx, logit_rows, seqs = self.prepare(batch)  # seqs: those that sample now
            hidden, greedy = self.model(input_ids, positions, ctx), None
            logits = self.model.compute_logits(hidden[logit_rows]) if seqs and not self.tp.rank else None
        if not seqs or self.tp.rank:  # every rank has the same hidden states; rank 0 samples
            return {}
        return {seq.seq_id: tok for seq, tok in zip(seqs, self.sample(logits, seqs, eos_token_ids, greedy))}

    @torch.inference_mode()
    def launch(self, batch: ScheduledBatch) -> Launched | None:
        """Start a decode step without waiting for its tokens, or None if it must run the plain way:
        prompt tokens, no graph that large, or a row whose token the in-graph argmax cannot pick."""
        seqs = [seq for seq, _ in batch.items]
        if not self._fits_graph(seqs) or any(
                s.params.temperature or s.num_completion_tokens < s.params.min_tokens for s in seqs):
            return None
        _, greedy = self._replay_graph(seqs)
        self.launches += 1
        host = self.host_out[self.launches % 2, :len(seqs)]  # the other buffer may still be unread
        host.copy_(greedy, non_blocking=True)
        done = torch.cuda.Event() if self.device.type == "cuda" else None
        if done is not None:
            done.record()
        self.prev_rows = {s.seq_id: row for row, s in enumerate(seqs)}
        return Launched(batch, list(self.prev_rows), host, done)

    def sample(self, logits: torch.Tensor, seqs: list[Sequence], eos_token_ids, greedy=None) -> list[int]:
        """Greedy for temperature 0, else a draw from softmax(logits / T); EOS masked before min_tokens.

        `greedy` is the argmax the CUDA graph already took: when nobody needs more, it is the answer."""
        temps = [s.params.temperature for s in seqs]
        held = [row for row, s in enumerate(seqs) if s.num_completion_tokens < s.params.min_tokens]
        if greedy is not None and not held and not any(temps):
            return greedy.tolist()
        logits = logits.float()  # a copy of the graph's bf16 logits; the eager path's fp32 ones as they are
        for row in held:
            p = seqs[row].params
            logits[row, list(p.stop_token_ids) + ([] if p.ignore_eos else list(eos_token_ids))] = float("-inf")
        greedy = logits.argmax(-1)
        if any(temps):
            t = torch.tensor(temps, device=logits.device).clamp(min=1e-5).unsqueeze(1)
            probs = torch.softmax(logits / t, dim=-1)
            # argmax(p / E) with E ~ Exp(1) draws from p (the exponential race): no sync, batched
            noise = torch.empty_like(probs).exponential_(generator=self.generator)
            drawn = (probs / noise).argmax(-1)
            greedy = torch.where(t.squeeze(1) > 1e-5, drawn, greedy)
        return greedy.tolist()

    # -- CUDA graphs ---------------------------------------------------------------------------

    @torch.inference_mode()
    def capture_cuda_graphs(self) -> None:
        """Record the decode step (forward, LM head, argmax) at batch sizes 1, 2, 4, 8, 16, 32, ... max_num_seqs."""
        cfg, dev = self.config, self.device
        m, width = cfg.max_num_seqs, -(-cfg.max_model_len // self.block_size)
        # every input of a decode step lives in one buffer, so a step makes one host-to-device copy
        self.host_in = torch.zeros(m * (5 + width), dtype=torch.int64, pin_memory=dev.type == "cuda")
        self.dev_in = torch.zeros_like(self.host_in, device=dev)
        ids, positions, slots, context_lens, src = self.dev_in[:5 * m].view(5, m)
        tables = self.dev_in[5 * m:].view(m, width)
        self.host_out = torch.zeros(2, m, dtype=torch.int64, pin_memory=dev.type == "cuda")
        self.launches, self.prev_rows = 0, {}
        self._write_inputs([])  # padding everywhere: padded rows write the spare block and attend 1 slot
        self.gv = gv = {"logits": torch.zeros(m, cfg.model_config.vocab_size, dtype=self.dtype, device=dev),
                        "greedy": torch.zeros(m, dtype=torch.int64, device=dev)}
        sizes = [b for b in (1, 2, 4, 8) if b < m] + list(range(16, m, 16)) + [m]
        for bs in sorted(set(sizes), reverse=True):  # largest first, so smaller ones reuse its memory
            ctx = StepContext(slots[:bs], bs, AttnGroup(tables[:bs], context_lens[:bs], None), None, self.decode_kernel)

            def forward(bs=bs, ctx=ctx):
                # a token still on the GPU (src >= 0) is row src of the previous step's argmax
                tokens = torch.where(src[:bs] >= 0, gv["greedy"][src[:bs].clamp(min=0)], ids[:bs])
                gv["logits"][:bs] = self.model.lm_head(self.model(tokens, positions[:bs], ctx))
                gv["greedy"][:bs] = gv["logits"][:bs].argmax(-1)  # bf16 -> fp32 is exact: the same argmax

            forward()  # warm-up (compiles the Triton kernel, settles the allocator)
            self.graphs[bs] = self._record(forward)

    def _fits_graph(self, seqs: list[Sequence]) -> bool:
        """Decode rows only, no more than the largest captured graph holds."""
        return bool(self.graphs) and len(seqs) <= max(self.graphs) and all(s.num_uncomputed_tokens == 1 for s in seqs)

    def _record(self, forward):
        """A CUDA graph of `forward`; on the CPU a stand-in that re-runs it (lets tests drive this path)."""
        if self.device.type != "cuda":
            return type("EagerReplay", (), {"replay": staticmethod(forward)})()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, self.graph_pool):
            forward()
        self.graph_pool = self.graph_pool or graph.pool()
        torch.cuda.synchronize()
        return graph

    def _write_inputs(self, seqs: list[Sequence]) -> None:
        """Decode inputs of `seqs` (rows after them: padding) into the pinned host buffer, then one copy."""
        m, bs, n = self.config.max_num_seqs, self.block_size, len(seqs)
        host = self.host_in.numpy()
        ids, positions, slots, context_lens, src = host[:5 * m].reshape(5, m)
        tables = host[5 * m:].reshape(m, -1)
        tables.fill(self.pad_block)
        ids[n:], positions[n:], context_lens[n:], slots[n:], src[n:] = 0, 0, 1, self.pad_block * bs, -1
        if n:
            ids[:n] = last = [s.token_ids[-1] for s in seqs]
            src[:n] = [self.prev_rows[s.seq_id] if t == PENDING else -1 for s, t in zip(seqs, last)]
            pos = positions[:n]
            pos[:] = [s.num_computed_tokens for s in seqs]
            context_lens[:n] = pos + 1
            widths = np.array([len(s.block_table) for s in seqs])
            rows = np.repeat(np.arange(n), widths)  # the block tables, flattened, scattered row by row
            cols = np.arange(rows.size) - np.repeat(np.cumsum(widths) - widths, widths)
            tables[rows, cols] = np.fromiter(itertools.chain.from_iterable(s.block_table for s in seqs),
                                             np.int64, rows.size)
            slots[:n] = tables[np.arange(n), pos // bs] * bs + pos % bs
        self.dev_in.copy_(self.host_in)  # blocking: the next step may rewrite the host buffer at once

    def _replay_graph(self, seqs: list[Sequence]) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(seqs)
        self._write_inputs(seqs)
        self.graphs[min(b for b in self.graphs if b >= n)].replay()
        return self.gv["logits"][:n], self.gv["greedy"][:n]
