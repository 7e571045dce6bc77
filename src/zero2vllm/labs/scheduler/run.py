"""`z2v lab run scheduler [--code DIR]`: serve real requests with your scheduler in zero2vllm's engine.

The engine runs SmolLM2 greedily over the same prompts with its own scheduler and then with
yours (engine_adapter.py; the KV cache manager is the block-pool lab's reference), in a pool small
enough that requests are preempted and prompts chunked. It passes when both give the same tokens.
"""

from __future__ import annotations

from pathlib import Path

from zero2vllm.labs.block_pool.run import RunError, load_learner, run_in_engine

__all__ = ["RunError", "run"]


def run(*, code: Path | None, device: str, steps: int | None, out_dir: Path, echo) -> dict:
    from zero2vllm.labs.block_pool.engine_adapter import learner_block_manager
    from zero2vllm.labs.block_pool.reference import block_pool as reference_pool
    from zero2vllm.labs.scheduler.engine_adapter import learner_scheduler

    module, who = load_learner(code, "scheduler.py", "z2v_learner_scheduler")
    factories = dict(block_manager_factory=learner_block_manager(reference_pool),
                     scheduler_factory=learner_scheduler(module))
    return run_in_engine(factories, who, "scheduler", device, echo)
