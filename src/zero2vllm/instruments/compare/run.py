"""Measuring every target in turn with the same benchmark (and `--rounds`), while watching the
CPU share other processes take, into one JSON-able result."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from .explain import explain, format_table
from .plot import _clean, write_plot
from .scrape import Scraper, summarize_scrape
from .servers import ChildServer, preflight
from .targets import CompareConfig, CompareError, ENGINE, NAIVE, Target, VLLM, free_port


def run_compare(targets: list[Target], cfg: CompareConfig, *, out_dir: Path,
                echo: Callable[[str], None] = print) -> dict:
    """Benchmark each target in turn (starting and stopping the ones we own); returns the result
    dict, also written to out_dir/compare.json with compare.png and compare.md beside it."""
    preflight(targets, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for r in range(cfg.rounds):
        # Every other round in reverse, so no target always runs first (or right after another).
        for t in (targets if r % 2 == 0 else targets[::-1]):
            if t.error:
                continue
            echo(f"\n== {t.name}{f' (round {r + 1} of {cfg.rounds})' if cfg.rounds > 1 else ''} ==")
            if t.kind != "url":  # a server we own starts afresh every round
                t.url = t.pid = None
            t.result = None
            try:
                _measure(t, cfg, out_dir, echo, r)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one failing target must not lose the others' numbers
                from zero2vllm.instruments.bench import BenchError
                from zero2vllm.realvllm.serve import ServeError

                if not isinstance(exc, (BenchError, ServeError, CompareError)):
                    raise
                t.error = str(exc)
                echo(f"{t.name}: {t.error}")
            if t.result:
                t.rounds.append(t.result)
    for t in targets:
        if len(t.rounds) > 1:  # the round in the middle by output throughput at the highest level
            ranked = sorted(t.rounds, key=lambda res: res["runs"][-1]["output_throughput"])
            t.result = ranked[(len(ranked) - 1) // 2]
    result = build_result(targets, cfg, time.perf_counter() - started)
    (out_dir / "compare.json").write_text(json.dumps(_clean(result), indent=2))
    (out_dir / "compare.md").write_text(format_table(result, markdown=True) + "\n\n"
                                        + "\n".join(explain(result)) + "\n")
    try:
        result["plot"] = str(write_plot(result, out_dir / "compare.png"))
    except Exception as exc:  # noqa: BLE001 - a plot must never cost the measured numbers
        result["plot_error"] = f"{type(exc).__name__}: {exc}"
    return result


def requests_for(cfg: CompareConfig, index: int) -> int | None:
    n = cfg.num_requests
    return n[index] if isinstance(n, list) else n


def _measure(t: Target, cfg: CompareConfig, out_dir: Path, echo: Callable[[str], None], round_: int = 0) -> None:
    from zero2vllm.instruments import bench

    server = None
    try:
        if t.kind in (NAIVE, ENGINE) and t.url is None:
            server = ChildServer(t.kind, cfg.model, free_port(), out_dir / f"{t.kind}-server.log", echo)
            t.ready_s = server.start(cfg.start_timeout_s)
            t.url, t.pid = server.url, server.proc.pid
            echo(f"{server.label} ready after {t.ready_s:.0f} s")
        elif t.kind == VLLM and t.url is None:
            from zero2vllm.realvllm.serve import ServeConfig, VllmServer

            server = VllmServer(ServeConfig(model=cfg.model, port=free_port(), eager=cfg.vllm_eager,
                                            kv_cache_gib=cfg.kv_cache_gib), echo=echo)
            server.log_path = out_dir / "vllm-server.log"
            server.start()
            t.ready_s = server.wait_ready(cfg.start_timeout_s)
            t.url, t.pid = server.url, server.proc.pid
            echo(f"vLLM ready after {t.ready_s:.0f} s")
        # One short request first (as vllm bench serve does): it fails fast on a broken server and
        # warms it up, outside the levels' scraped windows so it counts in none of their metrics.
        probe = bench.run_benchmark(t.url, api=t.api, concurrency=[1], num_requests=1,
                                    input_len=min(cfg.input_len, 16), output_len=min(cfg.output_len, 4),
                                    seed=cfg.seed + 999, metrics_url=None, timeout_s=cfg.timeout_s,
                                    warmup=False)["runs"][0]
        if not probe["completed"]:
            raise bench.BenchError(f"the warm-up request to {t.url} failed: "
                                   f"{(probe['errors'] or ['no answer'])[0]}")
        runs = []
        for i, level in enumerate(cfg.concurrency):
            scraper = Scraper(t.url, cfg.scrape_interval_s).start()
            cpu = CpuShare(t.pid)
            try:
                result = bench.run_benchmark(
                    t.url, api=t.api, concurrency=[level], num_requests=requests_for(cfg, i),
                    # new prompts for every level and round (the same for every target): a server that is
                    # not restarted, or one level after another, would otherwise be served from its prefix cache
                    input_len=cfg.input_len, output_len=cfg.output_len, seed=cfg.seed + 1000 * round_ + i,
                    pid=t.pid, metrics_url="auto" if t.pid is None else None,
                    timeout_s=cfg.timeout_s, warmup=False,
                    progress=lambda line, n=t.name: echo(f"{n}: {line}"))
            finally:
                samples = scraper.stop()
            run = result["runs"][0]
            run["cpu"] = cpu.result()
            run["server_metrics"] = summarize_scrape(samples)
            run["server_samples"] = samples
            runs.append(run)
            t.result = {**result, "runs": runs}
    finally:
        if server is not None:
            echo(f"stopping {t.name}")
            server.stop()


class CpuShare:
    """How much of the machine's CPU went to *other* processes during a level: the system's busy
    time minus ours (this process and the server's process tree). Several people share a
    2-core machine; a level measured while someone else trained a model is pessimistic, and
    the table should say so instead of hiding it."""

    def __init__(self, server_pid: int | None):
        import psutil

        self.psutil, self.server_pid = psutil, server_pid
        self.t0, self.busy0, self.ours0 = time.perf_counter(), self._busy(), self._ours()

    def _busy(self) -> float:
        t = self.psutil.cpu_times()
        return sum(getattr(t, k, 0.0) for k in ("user", "nice", "system", "irq", "softirq", "steal"))

    def _ours(self) -> float | None:
        procs = [self.psutil.Process()]
        if self.server_pid:
            try:
                root = self.psutil.Process(self.server_pid)
                procs += [root] + root.children(recursive=True)
            except self.psutil.Error:
                return None
        total = 0.0
        for p in procs:
            try:
                c = p.cpu_times()
                total += c.user + c.system
            except self.psutil.Error:
                pass
        return total

    def result(self) -> dict:
        wall = time.perf_counter() - self.t0
        cores = self.psutil.cpu_count() or 1
        busy = self._busy() - self.busy0
        out = {"busy_frac": round(busy / (wall * cores), 3) if wall > 0 else None}
        ours1 = self._ours()
        if self.server_pid and self.ours0 is not None and ours1 is not None and wall > 0:
            out["others_frac"] = round(max(0.0, busy - (ours1 - self.ours0)) / (wall * cores), 3)
        return out


def build_result(targets: list[Target], cfg: CompareConfig, duration_s: float) -> dict:
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "duration_s": round(duration_s, 1),
        "machine": machine_description(),
        "config": {"concurrency": cfg.concurrency, "num_requests": cfg.num_requests,
                   "input_len": cfg.input_len, "output_len": cfg.output_len, "seed": cfg.seed,
                   "model": cfg.model, "vllm_eager": cfg.vllm_eager,
                   "kv_cache_gib": cfg.kv_cache_gib, "rounds": cfg.rounds},
        "targets": [{"name": t.name, "kind": t.kind, "api": t.api, "url": t.url,
                     "ready_s": t.ready_s, "error": t.error,
                     "model": (t.result or {}).get("model"),
                     "runs": (t.result or {}).get("runs", []),
                     # output tok/s per round and level, when measured more than once
                     "rounds": [[run["output_throughput"] for run in res["runs"]] for res in t.rounds]
                     if len(t.rounds) > 1 else []} for t in targets],
    }


def machine_description() -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return f"{cores} cores of {cpu}"


# -- presenting ----------------------------------------------------------------------------------
