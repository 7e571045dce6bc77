"""`z2v compare`: the naive API and real vLLM under the same load, side by side, and why they differ.

Every target gets the same benchmark (zero2vllm.bench.run_benchmark: same prompts, same seed,
same output length with ignore_eos, same concurrency levels), one target at a time so they never
share the CPU. While a target is measured, a thread reads its Prometheus /metrics every second;
for vLLM that shows the mechanism behind the numbers:

  vllm:num_requests_running   how many sequences share each forward pass (continuous batching)
  vllm:num_requests_waiting   requests queued because the batch or the KV cache is full
  vllm:kv_cache_usage_perc    fraction of the pre-allocated KV blocks in use (PagedAttention)
  vllm:num_preemptions        sequences evicted (and recomputed) because KV blocks ran out

The naive API reports z2v_requests_running, which never exceeds 1 (its lock is the whole story),
and z2v_requests_in_flight, from which the requests waiting for that lock follow.

Targets are URLs the user gives, or servers this module starts itself on free ports and stops
afterwards (`z2v serve naive` in a child process, `vllm serve` through zero2vllm.vllm_serve).
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

NAIVE, VLLM, ENGINE = "naive", "vllm", "engine"


class CompareError(Exception):
    """The comparison cannot run (bad target, server failed to start); one line says why."""


@dataclass
class Target:
    name: str
    url: str | None  # None: start the server ourselves
    api: str  # "generate" (naive) or "openai" (vLLM and other OpenAI-compatible servers)
    kind: str = "url"  # "naive" / "vllm" / "engine" when we start it, "url" for a given server
    pid: int | None = None  # the server's process, when we started it (memory is sampled from it)
    result: dict | None = None
    scrape: list[dict] = field(default_factory=list)
    error: str | None = None
    ready_s: float | None = None
    rounds: list[dict] = field(default_factory=list)  # one result per round; `result` is the median one


@dataclass
class CompareConfig:
    concurrency: list[int | None] = field(default_factory=lambda: [1, 4, 16])
    # Requests per level: one number for all, a list with one per level, or None for
    # max(8, 4 x level) as in z2v bench.
    num_requests: int | list[int] | None = None
    input_len: int = 128
    output_len: int = 64
    seed: int = 0
    model: str = "smollm2"
    vllm_eager: bool = True
    kv_cache_gib: int = 2
    timeout_s: float = 600.0
    start_timeout_s: float = 900.0
    scrape_interval_s: float = 1.0
    rounds: int = 1  # > 1: measure every target again, in reversed order every other round


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_target(text: str) -> Target:
    """NAME=URL; the API is found by asking the server (OpenAI /v1/models, else /generate)."""
    name, sep, url = text.partition("=")
    name, url = name.strip(), url.strip()
    if not sep or not name or not url.startswith(("http://", "https://")):
        raise CompareError(f"--target {text!r}: give NAME=URL, e.g. mine=http://127.0.0.1:9000")
    return Target(name, url.rstrip("/"), api="?")


def detect_api(url: str) -> str:
    if _get(url + "/v1/models") is not None:
        return "openai"
    if _get(url + "/health") is not None:
        return "generate"
    raise CompareError(f"{url} does not answer (neither /v1/models nor /health); is the server running?")


def _get(url: str, timeout: float = 3.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read() if resp.status == 200 else None
    except (OSError, urllib.error.URLError):
        return None


# -- reading /metrics during a run ---------------------------------------------------------------
# Our name -> the Prometheus sample names that carry it (vLLM's, then the naive API's).
SCRAPED = {
    "running": ("vllm:num_requests_running", "z2v_requests_running"),
    "waiting": ("vllm:num_requests_waiting",),
    "in_flight": ("z2v_requests_in_flight",),  # the naive API: running + waiting for the lock
    "kv_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "preemptions": ("vllm:num_preemptions_total",),
    "generated": ("vllm:generation_tokens_total",),
    # zero2vllm's engine: sums of its per-step KV utilisation, so a level's mean is a difference
    "kv_steps": ("z2v_engine_kv_steps_total",),
    "kv_util_sum": ("z2v_engine_kv_utilization_sum_total",),
    "kv_contiguous_sum": ("z2v_engine_kv_utilization_contiguous_sum_total",),
}


def read_metrics(text: str) -> dict[str, float]:
    """Our few numbers from a /metrics page, summed over label sets (one engine, one model)."""
    from zero2vllm.serving.metrics import parse_prometheus

    values = parse_prometheus(text)
    out: dict[str, float] = {}
    for ours, names in SCRAPED.items():
        for name in names:
            found = [v for k, v in values.items() if k == name or k.startswith(name + "{")]
            if found:
                out[ours] = sum(found)
                break
    if "in_flight" in out and "waiting" not in out:
        out["waiting"] = max(0.0, out["in_flight"] - out.get("running", 0.0))
    return out


class Scraper:
    """A thread that samples BASE/metrics every `interval` seconds until stopped."""

    def __init__(self, base: str, interval: float = 1.0):
        self.url, self.interval = base + "/metrics", interval
        self.samples: list[dict] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.t0 = time.perf_counter()

    def start(self) -> "Scraper":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def _sample(self) -> None:
        body = _get(self.url, timeout=5)
        if body is not None:
            sample = read_metrics(body.decode("utf-8", "replace"))
            sample["t"] = round(time.perf_counter() - self.t0, 3)
            self.samples.append(sample)
        elif not self.samples:
            self.error = f"{self.url} did not answer"

    def stop(self) -> list[dict]:
        """Stop, after one last sample: counters then cover the whole level, however short."""
        self._stop.set()
        self._thread.join(timeout=10)
        self._sample()
        return self.samples


def summarize_scrape(samples: list[dict]) -> dict:
    """Peaks and means over one level's samples; counters as the increase during the level."""
    out: dict = {"n": len(samples)}
    busy = [s for s in samples if s.get("running", 0) > 0]
    for key in ("running", "waiting", "kv_usage"):
        vals = [s[key] for s in samples if key in s]
        if vals:
            out[f"{key}_max"] = max(vals)
            busy_vals = [s[key] for s in busy if key in s]
            out[f"{key}_mean_busy"] = (sum(busy_vals) / len(busy_vals)) if busy_vals else 0.0
    for key in ("preemptions", "generated", "kv_steps", "kv_util_sum", "kv_contiguous_sum"):
        vals = [s[key] for s in samples if key in s]
        if vals:
            out[key] = max(vals) - min(vals)
    if out.get("kv_steps"):  # the engine's mean over the level's steps: tokens stored / slots allocated
        out["kv_util"] = out["kv_util_sum"] / out["kv_steps"]
        out["kv_util_contiguous"] = out["kv_contiguous_sum"] / out["kv_steps"]
    return out


# -- the servers we start ------------------------------------------------------------------------
class ChildServer:
    """A server compare starts itself (`z2v serve naive` or `z2v serve engine`): a child process
    group on a free port, its log in a file, stopped with Ctrl-C like a person would."""

    def __init__(self, kind: str, model: str, port: int, log_path: Path, echo: Callable[[str], None]):
        self.kind, self.model, self.port, self.log_path, self.echo = kind, model, port, log_path, echo
        self.label = {NAIVE: "the naive API", ENGINE: "zero2vllm's engine"}[kind]
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float) -> float:
        from zero2vllm.vllm_serve import _set_pdeathsig

        cmd = [sys.executable, "-m", "zero2vllm", "serve", self.kind, "--model", self.model,
               "--port", str(self.port), "--host", "127.0.0.1"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        src = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.echo(f"starting {self.label} on {self.url} (log: {self.log_path})")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                         preexec_fn=_set_pdeathsig)
        started = time.perf_counter()
        while True:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-10:]
                raise CompareError(f"{self.label} exited with code {self.proc.returncode} while "
                                   "starting; last lines of its log:\n    " + "\n    ".join(tail))
            if _get(self.url + "/health") is not None:
                return time.perf_counter() - started
            if time.perf_counter() - started > timeout_s:
                self.stop()
                raise CompareError(f"{self.label} was not healthy after {timeout_s:.0f} s; "
                                   f"see {self.log_path}")
            time.sleep(0.5)

    def stop(self) -> None:
        from zero2vllm.vllm_serve import _group_alive, _signal_group

        if self.proc is None:
            return
        pgid = self.proc.pid
        if self.proc.poll() is None:
            _signal_group(pgid, signal.SIGINT)  # both servers stop on KeyboardInterrupt
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(pgid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)


# -- the comparison ------------------------------------------------------------------------------
def preflight(targets: list[Target], cfg: CompareConfig) -> None:
    """Fail before minutes of benchmarking when a target cannot work at all."""
    for t in targets:
        if t.kind == VLLM:
            from zero2vllm import vllm_env

            if not vllm_env.is_installed():
                raise CompareError("vLLM is not installed: run `z2v vllm install` first, or give a "
                                   "running server with --vllm URL (or --no-vllm)")
        if t.kind in (NAIVE, VLLM, ENGINE):
            from zero2vllm.models import ModelError, ensure_model_dir

            try:
                ensure_model_dir(cfg.model)
            except ModelError as exc:
                raise CompareError(str(exc)) from None
        elif t.api == "?":
            t.api = detect_api(t.url)


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
                _measure(t, cfg, out_dir, echo)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one failing target must not lose the others' numbers
                from zero2vllm.bench import BenchError
                from zero2vllm.vllm_serve import ServeError

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


def _measure(t: Target, cfg: CompareConfig, out_dir: Path, echo: Callable[[str], None]) -> None:
    from zero2vllm import bench

    server = None
    try:
        if t.kind in (NAIVE, ENGINE) and t.url is None:
            server = ChildServer(t.kind, cfg.model, free_port(), out_dir / f"{t.kind}-server.log", echo)
            t.ready_s = server.start(cfg.start_timeout_s)
            t.url, t.pid = server.url, server.proc.pid
            echo(f"{server.label} ready after {t.ready_s:.0f} s")
        elif t.kind == VLLM and t.url is None:
            from zero2vllm.vllm_serve import ServeConfig, VllmServer

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
                    input_len=cfg.input_len, output_len=cfg.output_len, seed=cfg.seed,
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
def rows(result: dict) -> list[dict]:
    """One row per (concurrency, target), with the speed-up over the first target at that level."""
    out = []
    base_name = result["targets"][0]["name"] if result["targets"] else None
    levels = result["config"]["concurrency"]
    by = {(t["name"], r["concurrency"]): r for t in result["targets"] for r in t["runs"]}
    for level in levels:
        base = by.get((base_name, level))
        for t in result["targets"]:
            r = by.get((t["name"], level))
            if r is None:
                continue
            sm = r.get("server_metrics") or {}
            speedup = None
            if base and base["output_throughput"] > 0:
                speedup = r["output_throughput"] / base["output_throughput"]
            out.append({
                "concurrency": level, "target": t["name"],
                "ok": f"{r['completed']}/{r['num_requests']}",
                "output_tok_s": r["output_throughput"], "req_s": r["request_throughput"],
                "ttft_median_ms": (r["ttft_ms"] or {}).get("median"),
                "tpot_median_ms": (r["tpot_ms"] or {}).get("median"),
                "e2el_median_ms": (r["e2el_ms"] or {}).get("median"),
                "e2el_p99_ms": (r["e2el_ms"] or {}).get("p99"),
                "running_max": sm.get("running_max"), "waiting_max": sm.get("waiting_max"),
                "kv_usage_max": sm.get("kv_usage_max"), "preemptions": sm.get("preemptions"),
                "kv_util": sm.get("kv_util"),
                "others_cpu": (r.get("cpu") or {}).get("others_frac"),
                "x_first": speedup,
            })
    return out


def _f(v, fmt: str = "{:.1f}") -> str:
    return "n/a" if v is None else fmt.format(v)


COLUMNS = [
    ("conc", lambda r: str(r["concurrency"] or "inf")),
    ("target", lambda r: r["target"]),
    ("ok", lambda r: r["ok"]),
    ("out tok/s", lambda r: _f(r["output_tok_s"])),
    ("x base", lambda r: _f(r["x_first"], "{:.2f}x")),
    ("req/s", lambda r: _f(r["req_s"], "{:.2f}")),
    ("TTFT med ms", lambda r: _f(r["ttft_median_ms"], "{:.0f}")),
    ("TPOT med ms", lambda r: _f(r["tpot_median_ms"], "{:.1f}")),
    ("E2EL med ms", lambda r: _f(r["e2el_median_ms"], "{:.0f}")),
    ("E2EL p99 ms", lambda r: _f(r["e2el_p99_ms"], "{:.0f}")),
    ("running max", lambda r: _f(r["running_max"], "{:.0f}")),
    ("waiting max", lambda r: _f(r["waiting_max"], "{:.0f}")),
    ("KV used max", lambda r: _f(None if r["kv_usage_max"] is None else 100 * r["kv_usage_max"],
                                 "{:.1f}%")),
    ("preempt", lambda r: _f(r["preemptions"], "{:.0f}")),
    ("KV util", lambda r: _f(None if r["kv_util"] is None else 100 * r["kv_util"], "{:.1f}%")),
    ("other CPU", lambda r: _f(None if r["others_cpu"] is None else 100 * r["others_cpu"], "{:.0f}%")),
]


def format_table(result: dict, *, markdown: bool = False) -> str:
    table = rows(result)
    cells = [[fmt(r) for _, fmt in COLUMNS] for r in table]
    heads = [h for h, _ in COLUMNS]
    if markdown:
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]
    line = lambda cs: "  ".join(c.rjust(w) if i > 1 else c.ljust(w)  # noqa: E731
                                for i, (c, w) in enumerate(zip(cs, widths))).rstrip()
    out = [line(heads)]
    prev = None
    for r, c in zip(table, cells):
        if prev is not None and r["concurrency"] != prev:
            out.append("")
        prev = r["concurrency"]
        out.append(line(c))
    return "\n".join(out)


def explain(result: dict) -> list[str]:
    """Plain sentences tying the numbers to continuous batching and PagedAttention."""
    lines = []
    targets = {t["name"]: t for t in result["targets"]}
    naive, vllm = targets.get(NAIVE), targets.get(VLLM)
    for t in result["targets"]:
        if t.get("error"):
            lines.append(f"{t['name']}: not measured: {t['error'].splitlines()[0]}")
    busy = [(t["name"], r["concurrency"], r["cpu"]["others_frac"]) for t in result["targets"]
            for r in t["runs"] if ((r.get("cpu") or {}).get("others_frac") or 0) > 0.1]
    if busy:
        lines.append("Careful: other processes used the CPU during the run ("
                     + ", ".join(f"{n} at {c or 'inf'}: {100 * f:.0f}% of all cores" for n, c, f in busy)
                     + "); those levels are pessimistic: rerun on a quiet machine to trust them.")
    if result["config"].get("rounds", 1) > 1:
        lines.append(f"Over {result['config']['rounds']} rounds in alternating order, output tok/s at the highest "
                     "level (the table shows each target's median round): " + "; ".join(
                         f"{t['name']} " + ", ".join(f"{r[-1]:.1f}" for r in t["rounds"])
                         for t in result["targets"] if t.get("rounds")) + ".")
    lines += _others(result, naive, vllm)
    if not (naive and vllm and naive["runs"] and vllm["runs"]):
        return lines
    levels = [r["concurrency"] for r in vllm["runs"] if any(
        n["concurrency"] == r["concurrency"] for n in naive["runs"])]
    if not levels:
        return lines
    top = levels[-1]
    n_top = next(r for r in naive["runs"] if r["concurrency"] == top)
    v_top = next(r for r in vllm["runs"] if r["concurrency"] == top)
    n_low = naive["runs"][0]
    v_low = vllm["runs"][0]
    if n_top["output_throughput"] > 0:
        lines.append(f"At concurrency {top or 'inf'}, vLLM generates "
                     f"{v_top['output_throughput'] / n_top['output_throughput']:.1f}x the naive API's "
                     f"output tokens per second ({v_top['output_throughput']:.0f} vs "
                     f"{n_top['output_throughput']:.0f}).")
    ns, vs = n_top.get("server_metrics") or {}, v_top.get("server_metrics") or {}
    if ns.get("running_max") is not None:
        lines.append(f"Naive API: at most {ns['running_max']:.0f} request in the model at a time; the "
                     f"others wait for its lock, so its throughput stays flat "
                     f"({n_low['output_throughput']:.0f} -> {n_top['output_throughput']:.0f} tok/s) and "
                     f"its median E2EL grows {_ratio(n_top, n_low)} from concurrency "
                     f"{n_low['concurrency'] or 'inf'} to {top or 'inf'}.")
    if vs.get("running_max") is not None:
        kv = vs.get("kv_usage_max")
        lines.append(f"vLLM: up to {vs['running_max']:.0f} requests running in the same forward passes "
                     f"(continuous batching: a new request joins the batch at the next step, a "
                     f"finished one leaves it), {vs.get('waiting_max', 0):.0f} waiting at most; "
                     f"median E2EL grows {_ratio(v_top, v_low)} while throughput grows "
                     f"{v_top['output_throughput'] / max(v_low['output_throughput'], 1e-9):.1f}x.")
        if kv is not None:
            lines.append(f"KV cache: at most {100 * kv:.1f}% of vLLM's blocks in use, "
                         f"{vs.get('preemptions', 0):.0f} preemptions: PagedAttention hands out "
                         "16-token blocks as sequences grow, so nothing is reserved for tokens "
                         "that are never generated (the paper: 96.3% of KV memory holds real tokens, "
                         "against 20.4-38.2% in Orca).")
    return lines


def _others(result: dict, naive: dict | None, vllm: dict | None) -> list[str]:
    """A sentence per other target (e.g. zero2vllm's engine): its throughput against the naive API
    and vLLM at the highest level all three completed, and its KV utilisation where it reports it."""
    lines = []
    for t in result["targets"]:
        if t["name"] in (NAIVE, VLLM) or not t["runs"]:
            continue
        top = t["runs"][-1]
        level = top["concurrency"]
        parts = []
        for other, label in ((vllm, "vLLM's"), (naive, "the naive API's")):
            match = [r for r in (other or {}).get("runs", []) if r["concurrency"] == level]
            if match and match[0]["output_throughput"] > 0:
                parts.append(f"{top['output_throughput'] / match[0]['output_throughput']:.2f}x {label}")
        if parts:
            lines.append(f"{t['name']}: {top['output_throughput']:.1f} output tok/s at concurrency "
                         f"{level or 'inf'}, " + " and ".join(parts) + ".")
        sm = top.get("server_metrics") or {}
        if sm.get("kv_util") is not None:
            lines.append(f"{t['name']}: {100 * sm['kv_util']:.1f}% of its allocated KV slots held tokens "
                         f"(mean over the level's steps); a cache reserving max_model_len per request "
                         f"would have used {100 * sm['kv_util_contiguous']:.1f}% on the same steps. "
                         "Paging wastes only the unfilled end of each sequence's last block (half a "
                         "block on average), which weighs more the shorter the sequences are.")
    return lines


def _ratio(hi: dict, lo: dict) -> str:
    a, b = (hi["e2el_ms"] or {}).get("median"), (lo["e2el_ms"] or {}).get("median")
    return f"{a / b:.1f}x" if a and b else "n/a"


def write_plot(result: dict, path: Path) -> Path:
    """One PNG: throughput and median E2EL per concurrency for each target, and vLLM's batch
    (running requests) and KV cache use over the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = result["config"]["concurrency"]
    labels = [str(c or "inf") for c in levels]
    xs = list(range(len(levels)))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for t in result["targets"]:
        by = {r["concurrency"]: r for r in t["runs"]}
        pts = [(i, by[c]) for i, c in zip(xs, levels) if c in by]
        if not pts:
            continue
        axes[0].plot([i for i, _ in pts], [r["output_throughput"] for _, r in pts], "o-", label=t["name"])
        axes[1].plot([i for i, _ in pts], [(r["e2el_ms"] or {}).get("median", 0) / 1e3 for _, r in pts],
                     "o-", label=t["name"])
    for ax, title, ylabel in ((axes[0], "output throughput", "tokens / s"),
                              (axes[1], "median end-to-end latency", "seconds")):
        ax.set_xticks(xs, labels)
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    ax = axes[2]
    vllm = next((t for t in result["targets"] if t["name"] == VLLM and t["runs"]), None)
    shown = vllm or next((t for t in result["targets"] if t["runs"]), None)
    if shown:
        offset = 0.0
        times, running, kv = [], [], []
        for r in shown["runs"]:
            samples = r.get("server_samples") or []
            for s in samples:
                times.append(offset + s["t"])
                running.append(s.get("running", 0))
                kv.append(100 * s.get("kv_usage", 0))
            if samples:
                ax.axvline(offset, color="grey", lw=0.5)
                ax.text(offset, 0, f" c={r['concurrency'] or 'inf'}", fontsize=8, va="bottom")
                offset += samples[-1]["t"] + 1
        handles = ax.plot(times, running, color="tab:green", label="requests running")
        ax.set_ylabel("requests running")
        ax.set_xlabel("seconds into the run")
        ax.set_title(f"{shown['name']}: batch size over time")
        if any(kv):
            ax2 = ax.twinx()
            handles += ax2.plot(times, kv, color="tab:red", alpha=0.6, label="KV cache used %")
            ax2.set_ylabel("KV cache used (%)", color="tab:red")
            ax2.set_ylim(bottom=0)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(handles=handles, loc="upper left")
    cfg = result["config"]
    fig.suptitle(f"{cfg['model']}, {cfg['output_len']} output tokens per request, "
                 f"{result['machine']}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _clean(o):
    if isinstance(o, float) and not math.isfinite(o):
        return "inf" if o > 0 else "-inf"
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_clean(v) for v in o]
    return o


def lab_metrics(result: dict) -> dict:
    """What the store keeps (and the `vllm` lab shows as evidence): the table, not the samples.

    Plus plain number lists against "concurrency" (vllm_output_tok_s, naive_e2el_median_ms...),
    which the dashboard plots for any lab run."""
    series: dict = {}
    levels = result["config"]["concurrency"]
    if all(isinstance(c, int) for c in levels):
        series["concurrency"] = levels
        for t in result["targets"]:
            by = {r["concurrency"]: r for r in t["runs"]}
            if all(c in by for c in levels):
                series[f"{t['name']}_output_tok_s"] = [round(by[c]["output_throughput"], 2) for c in levels]
                series[f"{t['name']}_e2el_median_ms"] = [
                    round((by[c]["e2el_ms"] or {}).get("median") or 0.0, 1) for c in levels]
    return {
        **series,
        "table": rows(result),
        "table_text": format_table(result),
        "explanation": explain(result),
        "config": result["config"],
        "machine": result["machine"],
        "targets": [{k: t[k] for k in ("name", "kind", "api", "url", "ready_s", "error", "model")}
                    for t in result["targets"]],
        "speedup_at_max": speedup_at_max(result),
    }


def speedup_at_max(result: dict) -> float | None:
    """vLLM's output throughput over the naive API's at the highest level both completed."""
    targets = {t["name"]: t for t in result["targets"]}
    n, v = targets.get(NAIVE), targets.get(VLLM)
    if not (n and v):
        return None
    nb = {r["concurrency"]: r for r in n["runs"] if r["completed"]}
    vb = {r["concurrency"]: r for r in v["runs"] if r["completed"]}
    common = [c for c in result["config"]["concurrency"] if c in nb and c in vb]
    if not common or nb[common[-1]]["output_throughput"] <= 0:
        return None
    return vb[common[-1]]["output_throughput"] / nb[common[-1]]["output_throughput"]
