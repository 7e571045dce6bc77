"""`z2v lab run serving-api [--code DIR]`: serve your app with SmolLM2 and benchmark it.

Starts the app from DIR/app.py (default: the reference) on a free local port, runs
`z2v bench`'s engine against it at concurrency 1 and 4, prints the table and writes the plots.
The lesson to read in the numbers: output throughput stays flat as concurrency grows, and the
extra clients only wait longer (E2EL grows), because the app serves one request at a time.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path


class RunError(Exception):
    """One-line problems: shown as `Error: ...`, exit 2."""


def run(*, code: Path | None, device: str, steps: int | None, out_dir: Path, echo) -> dict:
    from werkzeug.serving import WSGIRequestHandler, make_server

    from zero2vllm.instruments import bench as B
    from zero2vllm.labs import get_lab
    from zero2vllm.labs.framework import CheckFailed, entry_file, load_module
    from zero2vllm.models import ensure_model_dir

    if device != "cpu":
        raise RunError("the serving-api lab runs on the CPU; for a GPU use `z2v serve naive --device cuda`")
    lab = get_lab("serving-api")
    file = entry_file(Path(code) if code else lab.reference_dir, lab.entry)
    try:
        module = load_module(file, "z2v_learner_app")
    except CheckFailed as exc:
        raise RunError(exc.message) from None
    except Exception as exc:
        raise RunError(f"{file} does not import: {type(exc).__name__}: {exc}") from None
    if not hasattr(module, "create_app"):
        raise RunError(f"{file} has no create_app(model_dir)")
    started = time.perf_counter()
    echo(f"loading {file} with SmolLM2...")
    app = module.create_app(str(ensure_model_dir("smollm2")))

    class Quiet(WSGIRequestHandler):
        def log_request(self, *a, **k):
            pass

    httpd = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_port}"
    output_len = steps or 32
    echo(f"benchmarking {url}: concurrency 1 and 4, 8 requests each, 32-word prompts, "
         f"{output_len} new tokens")
    try:
        result = B.run_benchmark(url, api="generate", concurrency=[1, 4], num_requests=8,
                                 input_len=32, output_len=output_len, progress=echo)
    except B.BenchError as exc:
        raise RunError(str(exc)) from None
    finally:
        httpd.shutdown()
    echo("")
    echo(B.format_summary(result))
    stem = out_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    artifacts = B.write_plots(result, stem)
    json_path = Path(f"{stem}.json")
    json_path.write_text(B.to_json(result))
    artifacts.insert(0, json_path)
    trend = B.flat_trend(result)
    if trend:
        echo(f"\noutput throughput x{trend['ratio']:.2f} from 1 to 4 concurrent clients: "
             + ("flat, as a one-at-a-time server must be" if trend["ratio"] < 1.5 else
                "it grew: does your app batch requests?"))
    for p in artifacts:
        echo(f"wrote {p}")
    runs = result["runs"]
    return {
        "passed": all(r["failed"] == 0 and r["completed"] > 0 for r in runs),
        "duration_s": time.perf_counter() - started,
        "metrics": {
            "levels": [{"concurrency": r["concurrency"], "output_throughput": r["output_throughput"],
                        "request_throughput": r["request_throughput"],
                        "e2el_median_ms": (r["e2el_ms"] or {}).get("median"),
                        "failed": r["failed"]} for r in runs],
            "trend": trend,
            "peak_rss_bytes": max(((r.get("memory") or {}).get("rss_bytes") or {}).get("max", 0) for r in runs),
        },
        "artifacts": artifacts,
    }
