"""`z2v compare`: the naive API against real vLLM (and any other server), one table, one plot.

The work is zero2vllm.instruments.compare (which runs zero2vllm.instruments.bench for every target); this module parses
options, prints, and records the comparison as evidence of the `vllm` lab.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from zero2vllm.commands._app import Z2VError, pass_app


@click.command("compare")
@click.option("--concurrency", default="1,4,16", show_default=True,
              help="Concurrency levels, measured one after another for every target.")
@click.option("--requests", "num_requests", default=None, metavar="N|N,N,...",
              help="Requests per level, or one number per level (default: max(8, 4 x concurrency), "
                   "as z2v bench).")
@click.option("--input-len", type=click.IntRange(1), default=128, show_default=True,
              help="Prompt length in words (~tokens); the same prompts go to every target.")
@click.option("--output-len", type=click.IntRange(1), default=64, show_default=True,
              help="Tokens generated per request (fixed with ignore_eos).")
@click.option("--naive", "naive_url", default=None, metavar="URL",
              help="A running naive API (default: start `z2v serve naive` on a free port).")
@click.option("--vllm", "vllm_url", default=None, metavar="URL",
              help="A running vLLM (default: start one from `z2v vllm install`'s venv).")
@click.option("--no-naive", is_flag=True, help="Leave the naive API out.")
@click.option("--no-vllm", is_flag=True, help="Leave vLLM out.")
@click.option("--engine", "with_engine", is_flag=True,
              help="Measure zero2vllm's own engine too (starts `z2v serve engine` on a free port).")
@click.option("--target", "targets", multiple=True, metavar="NAME=URL",
              help="Another server to measure too (OpenAI or /generate API, detected); repeatable.")
@click.option("--model", default="smollm2", show_default=True,
              help="Model for the servers compare starts itself.")
@click.option("--vllm-compiled", is_flag=True,
              help="Start vLLM with torch.compile (faster, ~2-3 min start) instead of --enforce-eager.")
@click.option("--kv-cache-gib", type=click.IntRange(1), default=2, show_default=True,
              help="KV cache of the vLLM compare starts (GiB of RAM).")
@click.option("--rounds", type=click.IntRange(1, 9), default=1, show_default=True,
              help="Measure every target this many times, in reversed order every other round; the "
                   "table shows each target's median round (for noisy, shared machines).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for compare.json/.md/.png (default: DATA_DIR/compare/<time>).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def compare(app, concurrency, num_requests, input_len, output_len, naive_url, vllm_url, no_naive,
            no_vllm, with_engine, targets, model, vllm_compiled, kv_cache_gib, rounds, seed, out_dir,
            as_json):
    """Benchmark the naive API and vLLM with identical requests, side by side.

    Each target is measured alone (servers compare starts are stopped before the next one
    starts), with the same prompts, output length and concurrency levels as `z2v bench`. While
    vLLM runs, its /metrics are read every second: requests running at once, KV cache use and
    preemptions show *why* it is faster. With --engine, zero2vllm's own engine runs the same
    load, and its KV utilisation (tokens stored / slots allocated) is printed next to what a
    contiguous per-request cache would use. The table goes to the terminal, compare.md, and the
    store (evidence for `z2v check vllm`); the plot to compare.png.
    """
    from zero2vllm.instruments import compare as C
    from zero2vllm.commands.bench import parse_concurrency
    from zero2vllm.paths import data_dir

    levels = parse_concurrency(concurrency)
    num_requests = _parse_requests(num_requests, levels)
    chosen: list[C.Target] = []
    if not no_naive:
        chosen.append(C.Target(C.NAIVE, _url(naive_url, "--naive"), "generate",
                               kind=C.NAIVE if naive_url is None else "url"))
    if not no_vllm:
        chosen.append(C.Target(C.VLLM, _url(vllm_url, "--vllm"), "openai",
                               kind=C.VLLM if vllm_url is None else "url"))
    if with_engine:
        chosen.append(C.Target(C.ENGINE, None, "openai", kind=C.ENGINE))
    try:
        for text in targets:
            t = C.parse_target(text)
            if any(c.name == t.name for c in chosen):
                raise Z2VError(f"--target {text!r}: the name {t.name!r} is already used")
            chosen.append(t)
    except C.CompareError as exc:
        raise Z2VError(str(exc)) from None
    if not chosen:
        raise Z2VError("nothing to compare: drop --no-naive/--no-vllm, add --engine or --target NAME=URL")

    cfg = C.CompareConfig(concurrency=levels, num_requests=num_requests, input_len=input_len,
                          output_len=output_len, seed=seed, model=model,
                          vllm_eager=not vllm_compiled, kv_cache_gib=kv_cache_gib, rounds=rounds)
    out_dir = out_dir or data_dir() / "compare" / time.strftime("%Y%m%d-%H%M%S")
    echo = (lambda line: click.echo(line, err=True))
    from zero2vllm.commands.vllm import stop_on_signals

    echo(f"comparing {', '.join(t.name for t in chosen)}: concurrency "
         f"{', '.join(str(c or 'inf') for c in levels)}, {input_len}-word prompts, {output_len} "
         f"output tokens; one target at a time. Results: {out_dir}")
    started = time.perf_counter()
    try:
        with stop_on_signals():  # a SIGTERM too stops the servers compare started
            result = C.run_compare(chosen, cfg, out_dir=out_dir, echo=echo)
    except C.CompareError as exc:
        raise Z2VError(str(exc)) from None
    except KeyboardInterrupt:
        raise Z2VError("interrupted; the servers compare started were stopped") from None
    duration = time.perf_counter() - started

    if as_json:
        click.echo((out_dir / "compare.json").read_text())
    else:
        click.echo("")
        click.echo(C.format_table(result))
        click.echo("")
        for line in C.explain(result):
            click.echo(line)
        click.echo(f"\n{result['machine']}; written: {out_dir}/compare.md, compare.json"
                   + (", compare.png" if result.get("plot") else ""))
        if result.get("plot_error"):
            click.echo(f"no plot: {result['plot_error']}", err=True)

    measured = [t for t in result["targets"] if t["runs"] and not t["error"]]
    complete = bool(measured) and all(r["failed"] == 0 for t in measured for r in t["runs"])
    artifacts = [str(out_dir / n) for n in ("compare.json", "compare.md", "compare.png")
                 if (out_dir / n).exists()]
    from zero2vllm.tracker import evidence

    evidence.record(app.store, {
        "lab": "vllm", "kind": "compare",
        "passed": complete and len(measured) == len(result["targets"]),
        "duration_s": round(duration, 1), "code_path": str(out_dir),
        "criteria": [{"name": f"{t['name']} measured", "passed": bool(t["runs"]) and not t["error"],
                      "detail": t["error"] or f"{sum(r['completed'] for r in t['runs'])} requests "
                                              f"at {t['url']}"} for t in result["targets"]],
        "metrics": C.lab_metrics(result), "artifacts": artifacts,
    })
    failed = [t for t in result["targets"] if t["error"]]
    if failed:
        raise Z2VError(f"{', '.join(t['name'] for t in failed)} could not be measured (see above); "
                       "the others' numbers are recorded")


def _parse_requests(text: str | None, levels: list) -> int | list[int] | None:
    if text is None:
        return None
    try:
        counts = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        counts = []
    if not counts or any(n < 1 for n in counts) or len(counts) not in (1, len(levels)):
        raise Z2VError(f"--requests {text!r}: give one positive number, or one per concurrency level "
                       f"({len(levels)}), e.g. 8,16,64")
    return counts[0] if len(counts) == 1 else counts


def _url(url: str | None, option: str) -> str | None:
    if url is None:
        return None
    if not url.startswith(("http://", "https://")):
        raise Z2VError(f"{option} {url!r}: give the base URL, e.g. http://127.0.0.1:8000")
    return url.rstrip("/")


def register(group: click.Group) -> None:
    group.add_command(compare)
