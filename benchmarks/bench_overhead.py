"""How accurate and how cheap is `z2v bench`? Measured against a fake server with known timings.

    PYTHONPATH=src python benchmarks/bench_overhead.py [--requests 5000] [--delay 0.05]

1. Accuracy: a server that answers /generate after exactly --delay seconds. The benchmark's
   median E2EL minus the delay is its error; we also pair each request with the time the
   server itself spent on it (its /fake/timings), which separates the benchmark's own overhead
   from the server's scheduling jitter on a busy machine.
2. Streaming definitions: a server that streams its first token after 40 ms and the rest every
   10 ms; TTFT, ITL and TPOT must come out as 40, 10 and 10 ms.
3. Overhead: a server that answers at once; the requests per second the benchmark sustains is
   its ceiling (it must be far above any real LLM server's, >= 1,000 req/s).
The fake server runs in its own process, so it never shares the benchmark's interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from zero2vllm.instruments.bench import run_benchmark  # noqa: E402


def start_fake(*args: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src") + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "..", "tests", "fake_server.py"), *args],
                            stdout=subprocess.PIPE, text=True, env=env)
    return proc, proc.stdout.readline().split()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=5000, help="requests per overhead run")
    ap.add_argument("--delay", type=float, default=0.05, help="the accuracy server's delay (s)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = ap.parse_args()
    out: dict = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}

    proc, url = start_fake("--delay", str(args.delay))
    try:
        n = 100
        r = run_benchmark(url, api="generate", concurrency=[1], num_requests=n, input_len=8, output_len=4,
                          metrics_url=None)
        server = json.loads(urllib.request.urlopen(url + "/fake/timings").read())["seconds"][-n:]
        e2el = r["runs"][0]["samples"]["e2el_ms"]
        per_req = [e - s * 1e3 for e, s in zip(e2el, server)]
        out["accuracy"] = {
            "delay_ms": args.delay * 1e3,
            "e2el_median_ms": statistics.median(e2el),
            "e2el_minus_delay_median_ms": statistics.median(e2el) - args.delay * 1e3,
            "server_time_median_ms": statistics.median(server) * 1e3,
            "client_overhead_median_ms": statistics.median(per_req),
            "client_overhead_p99_ms": sorted(per_req)[int(0.99 * (len(per_req) - 1))],
        }
    finally:
        proc.terminate()

    proc, url = start_fake("--ttft", "0.04", "--itl", "0.01")
    try:
        r = run_benchmark(url, api="openai", concurrency=[4], num_requests=40, input_len=8, output_len=16,
                          metrics_url=None)
        run = r["runs"][0]
        out["streaming"] = {"ttft_median_ms": run["ttft_ms"]["median"], "itl_median_ms": run["itl_ms"]["median"],
                            "tpot_median_ms": run["tpot_ms"]["median"], "e2el_median_ms": run["e2el_ms"]["median"],
                            "expected": "TTFT 40, ITL 10, TPOT 10, E2EL 190 ms"}
    finally:
        proc.terminate()

    proc, url = start_fake()
    try:
        rows = []
        for api in ("generate", "openai"):
            r = run_benchmark(url, api=api, concurrency=[1, 16, 64], num_requests=args.requests, input_len=8,
                              output_len=1 if api == "generate" else 4, metrics_url=None)
            for run in r["runs"]:
                rows.append({"api": api, "concurrency": run["concurrency"], "requests": run["completed"],
                             "failed": run["failed"], "req_per_s": run["request_throughput"],
                             "e2el_median_ms": run["e2el_ms"]["median"]})
        out["overhead"] = rows
    finally:
        proc.terminate()

    a, s = out["accuracy"], out["streaming"]
    print(f"machine: {out['cpus']} CPUs, Python {out['python']}")
    print(f"\naccuracy, server delay {a['delay_ms']:.0f} ms, 100 sequential requests:")
    print(f"  median E2EL {a['e2el_median_ms']:.2f} ms -> {a['e2el_minus_delay_median_ms']:+.2f} ms from the delay")
    print(f"  server's own time per request (median) {a['server_time_median_ms']:.2f} ms")
    print(f"  benchmark overhead per request: median {a['client_overhead_median_ms']:.2f} ms, "
          f"p99 {a['client_overhead_p99_ms']:.2f} ms")
    print(f"\nstreaming (server: first token at 40 ms, then every 10 ms, 16 tokens, concurrency 4):")
    print(f"  TTFT {s['ttft_median_ms']:.2f}  ITL {s['itl_median_ms']:.2f}  TPOT {s['tpot_median_ms']:.2f}  "
          f"E2EL {s['e2el_median_ms']:.2f} ms (medians; expected 40 / 10 / 10 / 190)")
    print(f"\noverhead: a server that answers at once, {args.requests} requests per level")
    print(f"  {'api':<9} {'conc':>5} {'ok':>6} {'failed':>6} {'req/s':>9} {'E2EL med ms':>12}")
    for row in out["overhead"]:
        print(f"  {row['api']:<9} {row['concurrency']:>5} {row['requests']:>6} {row['failed']:>6} "
              f"{row['req_per_s']:>9.0f} {row['e2el_median_ms']:>12.2f}")
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
