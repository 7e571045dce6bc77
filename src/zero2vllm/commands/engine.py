"""`z2v engine trace` (watch the scheduler and the block tables) and `z2v serve engine` (the server).

Module level stays light (click only): torch and the engine load inside the commands.
"""

from __future__ import annotations

import json
import sys

import click

from zero2vllm.commands._app import Z2VError
from zero2vllm.engine.traces import DEFAULTS, KEEP


@click.group("engine")
def engine_group() -> None:
    """zero2vllm's own mini vLLM: paged KV cache, continuous batching, prefix caching."""


@engine_group.command("trace")
@click.argument("prompts", nargs=-1, required=True)
@click.option("--model", default="smollm2", show_default=True, help="smollm2 | a Hugging Face Llama folder")
@click.option("--max-tokens", type=click.IntRange(1, 512), default=DEFAULTS["max_tokens"], show_default=True)
@click.option("--block-size", type=click.IntRange(1, 256), default=DEFAULTS["block_size"], show_default=True)
@click.option("--num-kv-blocks", type=click.IntRange(1), default=DEFAULTS["num_kv_blocks"], show_default=True,
              help="Size of the KV pool (small, so you can watch it fill; tiny forces preemption).")
@click.option("--max-num-batched-tokens", type=click.IntRange(1), default=DEFAULTS["max_num_batched_tokens"],
              show_default=True, help="Token budget per step (small values show chunked prompts).")
@click.option("--max-num-seqs", type=click.IntRange(1), default=DEFAULTS["max_num_seqs"], show_default=True)
@click.option("--no-prefix-caching", is_flag=True)
@click.option("--repeat", type=click.IntRange(1, 4), default=DEFAULTS["repeat"], show_default=True,
              help="Submit the prompts this many times, one round after another (round 2 hits the prefix cache).")
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON (what the dashboard draws).")
@click.option("--no-save", is_flag=True,
              help=f"Don't keep this trace for the dashboard (by default the newest {KEEP} are kept).")
def trace_cmd(prompts, model, max_tokens, block_size, num_kv_blocks, max_num_batched_tokens, max_num_seqs,
              no_prefix_caching, repeat, as_json, no_save):
    """Run PROMPTS through the engine and print, step by step, what the scheduler decided.

    Each step shows which sequence computed how many tokens (prefill, chunk, decode,
    recompute), its block table, the token it sampled, preemptions, the waiting queue, and a
    map of the block pool. Greedy decoding, fp32 on the CPU. The trace is saved under the data
    directory (engine-traces/) and `z2v serve dashboard` draws it at /engine/trace.
    """
    from zero2vllm.engine.trace import POOL_LEGEND, run_trace
    from zero2vllm.models import ModelError

    settings = {"prompts": list(prompts), "model": model, "max_tokens": max_tokens, "block_size": block_size,
                "num_kv_blocks": num_kv_blocks, "max_num_batched_tokens": max_num_batched_tokens,
                "max_num_seqs": max_num_seqs, "prefix_caching": not no_prefix_caching, "repeat": repeat}
    try:
        record, path = run_trace(settings, source="cli", save=not no_save)
    except (ModelError, ValueError, FileNotFoundError, RuntimeError) as exc:
        raise Z2VError(str(exc)) from None
    except OSError as exc:  # the trace ran but could not be saved (disk full, read-only data dir)
        raise Z2VError(f"could not save the trace: {exc}; rerun with --no-save") from None
    rounds = record["rounds"]
    if as_json:  # stdout stays pure JSON (it is saved all the same)
        click.echo(json.dumps(rounds if repeat > 1 else rounds[0], indent=1))
        return
    first = rounds[0]
    click.echo(f"KV pool: {first['num_blocks']} blocks x {first['block_size']} tokens; token budget "
               f"{first['budget_tokens']} per step; prefix caching {'off' if no_prefix_caching else 'on'}")
    click.echo(f"pool map: {POOL_LEGEND}")
    for r, result in enumerate(rounds, 1):
        if repeat > 1:
            click.echo(f"\n=== round {r} ===")
        for step in result["steps"]:
            _print_step(step)
        click.echo("")
        for req in result["requests"]:
            extra = f", preempted {req['preemptions']}x" if req["preemptions"] else ""
            click.echo(f"seq {req['seq']} ({req['prompt_tokens']} prompt tokens, {req['finish_reason']}{extra}): "
                       f"{req['completion']!r}")
    if path is not None:
        click.echo(f"\nSaved to {path}; `z2v serve dashboard` draws it at /engine/trace.")


def _print_step(step: dict) -> None:
    hits = f", prefix-cache hit {step['prefix_hit_tokens']} tokens" if step["prefix_hit_tokens"] else ""
    click.echo(f"\nstep {step['step']}: {step['tokens']} tokens; free blocks {step['blocks_free_before']} -> "
               f"{step['blocks_free']}{hits}")
    for w in step["work"]:
        a, b = w["positions"]
        pos = f"pos {a}" if b - a == 1 else f"pos {a}-{b - 1}"
        cached = f" ({w['cached_tokens']} from cache)" if w["cached_tokens"] else ""
        sampled = f" -> {w['sampled']!r}" if w["sampled"] is not None else ""
        done = f"  [{w['finished']}]" if w["finished"] else ""
        click.echo(f"  seq {w['seq']:<2} {w['kind']:<16} {pos + cached:<26} blocks {w['block_table']}{sampled}{done}")
    if step["preempted"]:
        click.echo(f"  preempted: {', '.join(f'seq {s}' for s in step['preempted'])} (blocks freed; recomputed later)")
    if step["waiting"]:
        click.echo(f"  waiting: {', '.join(f'seq {s}' for s in step['waiting'])}")
    click.echo(f"  pool {step['pool']}")


@click.command("engine", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                           "help_option_names": []})
@click.pass_context
def serve_engine(ctx: click.Context) -> None:
    """zero2vllm's engine behind an OpenAI-compatible API (--help for its options)."""
    from zero2vllm.commands.serve_engine import main as server_main

    sys.exit(server_main(list(ctx.args)))


COMMANDS = {"engine": engine_group}
SERVE_COMMANDS = {"engine": serve_engine}  # z2v serve engine
