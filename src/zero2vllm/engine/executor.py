"""Tensor parallelism's driver: one process per rank, each running a ModelRunner on its slice.

Rank 0 is the engine's own process: it holds the scheduler and its own ModelRunner (vLLM's
"driver worker"). Ranks 1..N-1 are started with torch.multiprocessing (spawn: a fresh Python,
no forked threads or CUDA state) and loop in `worker_main`: receive the step's plan, run it.
Every step, `TPExecutor.run` broadcasts the ScheduledBatch (plain Python data: the sequences'
tokens, counters and block tables, pickled) down one pipe per worker and then runs rank 0's
share; the two all-reduces per layer keep the ranks in step, and only rank 0 computes logits
and samples. A pipe, not a torch.distributed broadcast, because an idle server's workers may
wait for hours, past any collective's timeout; and a worker whose engine died reads EOF and exits. The same block tables mean the same slots on every rank: each rank's
pool holds its own KV heads of the same blocks, so the block manager needs no change.

It mirrors vLLM's executor and worker split: `TPExecutor` is vllm/v1/executor/multiproc_executor.py's
MultiprocExecutor (which broadcasts SchedulerOutput to its WorkerProcs through a shared-memory
queue, for the same reasons), and `worker_main` the loop of a WorkerProc around its Worker and
GPUModelRunner.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .config import EngineConfig
from .model_runner import ModelRunner
from .parallel import init_tp_group


def rank_config(config: EngineConfig, rank: int) -> EngineConfig:
    """Rank r's config: GPU r on CUDA; on the CPU, the cores shared among the ranks."""
    n, device = config.tensor_parallel_size, config.device
    if device.startswith("cuda"):
        device = f"cuda:{rank}"
        torch.cuda.set_device(rank)  # NCCL uses the current device
    threads = config.num_threads or (max(1, (os.cpu_count() or 1) // n) if device == "cpu" else None)
    return dataclasses.replace(config, device=device, num_threads=threads)


def worker_main(config: EngineConfig, rank: int, port: int, plans) -> None:
    """Ranks 1..N-1: build this rank's runner, then run every step rank 0 sends, until None or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: rank 0 stops us
    config = rank_config(config, rank)
    tp = init_tp_group(rank, config.tensor_parallel_size, port, torch.device(config.device))
    runner = ModelRunner(config, tp)
    dist.barrier()  # ready: every rank has loaded its weights
    try:
        while (plan := plans.recv()) is not None:
            try:
                runner.run(*plan)
            except Exception:  # noqa: BLE001 - rank 0 fails the same way and retries one by one
                pass
    except EOFError:  # the engine's process is gone
        pass
    finally:
        dist.destroy_process_group()


class TPExecutor:
    """Looks like a ModelRunner to LLMEngine (`num_blocks`, `run`); `driver` is rank 0's runner."""

    def __init__(self, config: EngineConfig):
        n = config.tensor_parallel_size
        with socket.socket() as s:  # a free port on localhost for the ranks to meet
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ctx = mp.get_context("spawn")
        self.pipes, self.workers = [], []
        for r in range(1, n):
            recv, send = ctx.Pipe(duplex=False)
            self.workers.append(ctx.Process(target=worker_main, args=(config, r, port, recv), daemon=True,
                                            name=f"tp-rank-{r}"))
            self.workers[-1].start()
            recv.close()  # the worker holds the only read end: our exit is its EOF
            self.pipes.append(send)
        try:
            config0 = rank_config(config, 0)
            self.tp = init_tp_group(0, n, port, torch.device(config0.device))
            self.driver = ModelRunner(config0, self.tp)
            dist.barrier()  # return only once every rank is ready (a worker may still be reading the folder)
        except BaseException:
            self.shutdown(timeout=5)
            raise
        self.num_blocks = self.driver.num_blocks

    def run(self, batch, eos_token_ids: tuple[int, ...] = ()) -> dict[int, int]:
        for pipe in self.pipes:
            pipe.send((batch, eos_token_ids))
        return self.driver.run(batch, eos_token_ids)

    def shutdown(self, timeout: float = 30) -> None:
        """Tell the workers to stop, wait for them (killing any that hang), leave the group."""
        for pipe in self.pipes:
            try:
                pipe.send(None)
                pipe.close()
            except OSError:  # that worker is gone already
                pass
        for w in self.workers:
            w.join(timeout)
            if w.is_alive():
                w.kill()
                w.join()
        self.pipes = []
        if dist.is_initialized():
            dist.destroy_process_group()
