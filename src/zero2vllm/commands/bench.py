"""`z2v bench URL`: measure a serving API with `vllm bench serve`'s definitions.

The work is zero2vllm.instruments.bench.run_benchmark; this module parses options, prints, writes files and
records the run in the store (lab "bench", or the lab named by --lab, kind "bench").
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import click

from zero2vllm.commands._app import Z2VError, pass_app


def parse_concurrency(text: str) -> list[int | None]:
    levels: list[int | None] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if part.lower() in ("inf", "none", "unlimited"):
            levels.append(None)
            continue
        try:
            n = int(part)
        except ValueError:
            n = 0
        if n < 1:
            raise Z2VError(f"--concurrency {text!r}: give positive integers (or inf) separated by commas, e.g. 1,4,16")
        levels.append(n)
    if not levels:
        raise Z2VError("--concurrency: give at least one level, e.g. 1,4,16")
    return levels


def parse_rate(text: str) -> float:
    if text.lower() in ("inf", "infinity"):
        return math.inf
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not rate > 0 or not math.isfinite(rate):
        raise Z2VError(f"--rate {text!r}: give requests per second (> 0) or inf")
    return rate


@click.command("bench")
@click.argument("url")
@click.option("--api", type=click.Choice(["generate", "openai"]), default="generate", show_default=True,
              help="generate: the naive POST /generate; openai: /v1/completions with streaming (vLLM).")
@click.option("--concurrency", default="1,4,16", show_default=True,
              help="Max in-flight requests; a list runs one benchmark per level (inf: no limit).")
@click.option("--requests", "num_requests", type=click.IntRange(1), default=None,
              help="Requests per level (default: max(8, 4 x concurrency)).")
@click.option("--rate", default="inf", show_default=True,
              help="Arrival rate in requests/s (Poisson), or inf: all at once.")
@click.option("--burstiness", type=float, default=1.0, show_default=True,
              help="Gamma shape of the arrival gaps (1: Poisson; lower: burstier).")
@click.option("--input-len", type=click.IntRange(1), default=128, show_default=True,
              help="Prompt length (words, or token ids with --prompt-format ids).")
@click.option("--output-len", type=click.IntRange(1), default=128, show_default=True,
              help="Tokens to generate per request (fixed: ignore_eos).")
@click.option("--prompts", "prompts_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Prompts to cycle through: one per line, or JSON lines with a \"prompt\".")
@click.option("--prompt-format", type=click.Choice(["text", "ids"]), default="text", show_default=True,
              help="ids: random token ids (exact input lengths; generate API: prompt_token_ids).")
@click.option("--model", default=None, help="Model name for --api openai (default: the server's first).")
@click.option("--pid", type=int, default=None, help="Sample this process's memory (RSS) instead of /metrics.")
@click.option("--metrics-url", default="auto", show_default=True,
              help="Prometheus endpoint to sample memory from (auto: URL/metrics if it has memory; none: off).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=600.0, show_default=True,
              help="Seconds before one request counts as failed.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of tables.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the JSON result here (plots go beside it).")
@click.option("--plot/--no-plot", default=True, show_default=True, help="Write PNG plots.")
@click.option("--lab", default=None, help="Record this run as evidence for a lab (e.g. serving-api).")
@pass_app
def bench(app, url, api, concurrency, num_requests, rate, burstiness, input_len, output_len,
          prompts_file, prompt_format, model, pid, metrics_url, timeout_s, seed, as_json, out_file,
          plot, lab):
    """Load-test the serving API at URL: TTFT, TPOT, ITL, E2EL and throughput per concurrency.

    Definitions follow `vllm bench serve` exactly, so `--api openai` against vLLM and
    `--api generate` against `z2v serve naive` give comparable numbers.
    """
    from zero2vllm.instruments import bench as B
    from zero2vllm.paths import data_dir

    levels = parse_concurrency(concurrency)
    request_rate = parse_rate(rate)
    if burstiness <= 0:
        raise Z2VError("--burstiness must be > 0")
    if pid is not None:
        import psutil

        if not psutil.pid_exists(pid):
            raise Z2VError(f"--pid {pid}: no such process")
    try:
        prompts = B.load_prompts(prompts_file) if prompts_file else None
        say = None if as_json else (lambda m: click.echo(m, err=True))
        if say:
            say(f"benchmarking {url} ({api} API), concurrency {', '.join(str(c or 'inf') for c in levels)}...")
        started = time.perf_counter()
        result = B.run_benchmark(
            url, api=api, concurrency=levels, num_requests=num_requests, request_rate=request_rate,
            burstiness=burstiness, input_len=input_len, output_len=output_len, prompts=prompts,
            prompt_format=prompt_format, model=model, pid=pid,
            metrics_url=None if metrics_url.lower() == "none" else metrics_url,
            timeout_s=timeout_s, seed=seed, progress=say,
        )
    except B.BenchError as exc:
        raise Z2VError(str(exc)) from None
    duration = time.perf_counter() - started

    stem_dir = out_file.parent if out_file else data_dir() / "bench"
    stem = (out_file.with_suffix("") if out_file else
            stem_dir / f"bench-{api}-{time.strftime('%Y%m%d-%H%M%S')}")
    json_path = out_file or Path(f"{stem}.json")
    artifacts = []
    if plot:
        artifacts += B.write_plots(result, stem)
    result["artifacts"] = [str(p) for p in artifacts]
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(B.to_json(result))
    artifacts.insert(0, json_path)

    if as_json:
        click.echo(B.to_json(result))
    else:
        for run in result["runs"]:
            click.echo(B.format_run(run))
        click.echo("")
        click.echo(B.format_summary(result))
        trend = B.flat_trend(result)
        if trend:
            click.echo(f"output throughput x{trend['ratio']:.2f} from concurrency "
                       f"{trend['from_concurrency'] or 'inf'} to {trend['to_concurrency'] or 'inf'}")
        click.echo("wrote " + "\n      ".join(str(p) for p in artifacts))

    failed = sum(r["failed"] for r in result["runs"])
    completed = sum(r["completed"] for r in result["runs"])
    best = max(result["runs"], key=lambda r: r["output_throughput"])
    from zero2vllm.tracker import evidence

    evidence.record(app.store, {
        "lab": lab or "bench", "kind": "bench", "passed": completed > 0 and failed == 0,
        "duration_s": duration, "code_path": result["endpoint"],
        "criteria": [{"name": "every request answered", "passed": failed == 0 and completed > 0,
                      "detail": f"{completed} completed, {failed} failed"}],
        "metrics": {
            "api": api, "url": result["endpoint"], "model": result["model"],
            "input_len": input_len, "output_len": output_len,
            "levels": [{k: r[k] for k in ("concurrency", "completed", "failed", "request_throughput",
                                         "output_throughput", "total_token_throughput")}
                       | {"e2el_median_ms": (r["e2el_ms"] or {}).get("median"),
                          "ttft_median_ms": (r["ttft_ms"] or {}).get("median")}
                       for r in result["runs"]],
            "best_output_throughput": best["output_throughput"],
            "trend": B.flat_trend(result),
        },
        "artifacts": [str(p) for p in artifacts],
    })
    if completed == 0:
        raise Z2VError(f"no request succeeded; first error: {(result['runs'][0]['errors'] or ['?'])[0]}")


def register(group: click.Group) -> None:
    group.add_command(bench)
