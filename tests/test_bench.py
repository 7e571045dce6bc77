"""`z2v bench`: vLLM's definitions, accuracy against known delays, and its own overhead."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

import pytest
from model_cache import smollm2_dir, tiny_model_dir  # noqa: F401

from zero2vllm.instruments import bench as B


@pytest.fixture
def fake_server():
    """Start tests/fake_server.py in its own process (not sharing our GIL)."""
    procs = []

    def start(*args):
        p = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "fake_server.py"), *args],
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        return p.stdout.readline().split()[-1]

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


def test_statistics_follow_vllm_definitions():
    np = pytest.importorskip("numpy")
    xs = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.3]
    for q in (50, 90, 99):
        assert B.percentile(xs, q) == pytest.approx(np.percentile(xs, q))
    a = B.RequestResult(success=True, latency=1.0, ttft=0.2, itl=[0.4, 0.4], prompt_tokens=10, output_tokens=3)
    b = B.RequestResult(success=True, latency=0.5, ttft=0.5, itl=[], prompt_tokens=6, output_tokens=1)
    c = B.RequestResult(success=False, error="HTTP 500: boom", latency=0.1)
    m = B.compute_metrics([a, b, c], duration=2.0, requested_output_len=3)
    assert (m["completed"], m["failed"], m["errors"]) == (2, 1, ["HTTP 500: boom"])
    assert m["total_input_tokens"] == 16 and m["total_output_tokens"] == 4
    assert m["request_throughput"] == 1.0 and m["output_throughput"] == 2.0
    assert m["total_token_throughput"] == 10.0
    assert m["tpot_ms"]["n"] == 1 and m["tpot_ms"]["mean"] == pytest.approx(400.0)  # (1.0-0.2)/(3-1)
    assert m["itl_ms"]["n"] == 2 and m["itl_ms"]["mean"] == pytest.approx(400.0)  # pooled
    assert m["ttft_ms"]["median"] == pytest.approx(350.0)
    assert m["e2el_ms"]["median"] == pytest.approx(750.0)
    # non-streaming: no TTFT at all, and no made-up TPOT
    d = B.RequestResult(success=True, latency=0.3, prompt_tokens=4, output_tokens=None)
    m = B.compute_metrics([d], duration=1.0, requested_output_len=7)
    assert m["ttft_ms"] is None and m["tpot_ms"] is None and not m["ttft_observable"]
    assert m["total_output_tokens"] == 7 and "assumed 7" in m["notes"][0]


def test_e2el_within_2ms_of_a_known_delay(fake_server):
    url = fake_server("--delay", "0.05")
    r = B.run_benchmark(url, api="generate", concurrency=[1], num_requests=30, input_len=8,
                        output_len=4, metrics_url=None, warmup=False)
    run = r["runs"][0]
    assert run["completed"] == 30 and run["e2el_ms"]["median"] >= 50.0
    assert "TTFT" in run["notes"][-1] and run["ttft_ms"] is None
    # The server's own scheduling jitter is not the benchmark's error: pair each request with
    # the time the server spent on it, and look at the difference.
    server_s = json.loads(urllib.request.urlopen(url + "/fake/timings").read())["seconds"][-30:]
    overhead = [e - s * 1e3 for e, s in zip(run["samples"]["e2el_ms"], server_s)]
    assert 0 <= statistics.median(overhead) < 2.0, overhead


def test_streaming_ttft_itl_tpot(fake_server):
    url = fake_server("--ttft", "0.04", "--itl", "0.01")
    r = B.run_benchmark(url, api="openai", concurrency=[2], num_requests=6, input_len=5,
                        output_len=6, metrics_url="auto")
    run = r["runs"][0]
    assert r["model"] == "fake-model"  # discovered from /v1/models
    assert run["completed"] == 6 and run["total_output_tokens"] == 36  # from usage
    assert run["total_input_tokens"] == 30
    assert 40 <= run["ttft_ms"]["median"] < 55
    assert 10 <= run["itl_ms"]["median"] < 16 and run["itl_ms"]["n"] == 6 * 5
    assert 10 <= run["tpot_ms"]["median"] < 16
    assert 90 <= run["e2el_ms"]["median"] < 115  # 40 + 5 x 10
    assert run["memory"]["rss_bytes"]["max"] > 10 * 2**20  # sampled from the server's /metrics


def test_poisson_arrivals_and_overhead(fake_server):
    url = fake_server()
    # all at once, no concurrency limit: the client must not be the bottleneck
    r = B.run_benchmark(url, api="generate", concurrency=[64], num_requests=1500, input_len=4,
                        output_len=1, metrics_url=None)
    run = r["runs"][0]
    assert run["failed"] == 0
    assert run["request_throughput"] > 400  # >= 1,000 on an idle 2-core machine; see benchmarks/
    # Poisson at 100 req/s: 100 requests take about a second
    r = B.run_benchmark(url, api="openai", concurrency=[None], num_requests=100, request_rate=100.0,
                        input_len=4, output_len=2, metrics_url=None)
    assert 0.6 < r["runs"][0]["duration_s"] < 1.8


def test_bench_cli_against_the_naive_api(tiny_model_dir, z2v, home, tmp_path, request):
    """The week-2 lesson, measured: one request at a time, so throughput stays flat."""
    from zero2vllm.models import load_model
    from zero2vllm.instruments.naive import NaiveServer, ServerThread, create_app

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # less sensitive to other load on a small CI machine
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    model, tok, _ = load_model(str(tiny_model_dir))
    real = model.generate

    def paced(*a, **k):  # a model with a steady cost per token, like a real one
        out = real(*a, **k)
        time.sleep(0.04 * k["max_new_tokens"])  # dominates the client's per-request overhead
        return out

    model.generate = paced
    with ServerThread(create_app(NaiveServer(model, tok, name="tiny"))) as st:
        out = tmp_path / "r" / "naive.json"
        res = z2v("bench", st.url, "--concurrency", "1,4", "--requests", "8", "--input-len", "8",
                  "--output-len", "8", "--out", str(out), "--lab", "serving-api")
    assert "Serving Benchmark Result" in res.output and "TTFT, TPOT and ITL are not observable" in res.output
    data = json.loads(out.read_text())
    runs = data["runs"]
    assert [r["concurrency"] for r in runs] == [1, 4] and all(r["completed"] == 8 for r in runs)
    assert all(r["total_output_tokens"] == 64 for r in runs)
    ratio = runs[1]["output_throughput"] / runs[0]["output_throughput"]
    assert 0.5 < ratio < 1.8, ratio  # flat: batching would give ~4x
    assert runs[1]["e2el_ms"]["median"] > 2 * runs[0]["e2el_ms"]["median"]  # queueing shows as latency
    assert runs[0]["memory"]["rss_bytes"]["max"] > 100 * 2**20
    for png in data["artifacts"]:
        assert os.path.getsize(png) > 5000
    from zero2vllm.tracker.store import Store

    (row,) = Store.open(home / "zero2vllm.db").lab_runs("serving-api", kind="bench")
    assert row["passed"] and row["metrics"]["levels"][1]["concurrency"] == 4


def test_bench_cli_errors(z2v, fake_server):
    r = z2v("bench", "http://127.0.0.1:9", "--concurrency", "1", "--requests", "1", expect=2)
    assert "warm-up request" in r.output and "cannot connect" in r.output
    r = z2v("bench", "localhost:8000", expect=2)
    assert "http://" in r.output
    r = z2v("bench", "http://x", "--concurrency", "1,zero", expect=2)
    assert "--concurrency" in r.output
    r = z2v("bench", "http://x", "--rate", "-3", expect=2)
    assert "--rate" in r.output
    url = fake_server()
    r = z2v("bench", url, "--api", "openai", "--concurrency", "1", "--requests", "3", "--json",
            "--no-plot", "--output-len", "3")
    data = json.loads(r.output)
    assert data["runs"][0]["completed"] == 3 and data["runs"][0]["ttft_ms"]["n"] == 3


@pytest.mark.slow
def test_naive_api_gpu_script_on_cpu(tmp_path):
    """benchmarks/naive_api_gpu.py with a tiny model on the CPU: both parts run and agree in form."""
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "naive_api_gpu.py"
    out = tmp_path / "r.json"
    r = subprocess.run(
        [sys.executable, str(script), "--device", "cpu", "--shape", "tiny", "--concurrency", "1,2",
         "--input-len", "8", "--output-len", "4", "--requests", "4", "--seq-requests", "2",
         "--static-batches", "2", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=240,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "side by side" in r.stdout
    data = json.loads(out.read_text())
    assert data["baseline"]["static_bs2_tok_s"] > 0
    assert [a["concurrency"] for a in data["api"]] == [1, 2]
    assert all(a["completed"] == 4 and a["failed"] == 0 for a in data["api"])
    assert data["api"][0]["memory"]["rss_bytes"]["max"] > 50 * 2**20


def test_memory_from_a_process_id(fake_server):
    url = fake_server("--delay", "0.01")
    r = B.run_benchmark(url, api="generate", concurrency=[2], num_requests=40, input_len=4,
                        output_len=2, pid=os.getpid(), sample_interval=0.05)
    mem = r["runs"][0]["memory"]
    assert mem["source"] == f"pid {os.getpid()}" and mem["n"] >= 3
    assert mem["rss_bytes"]["max"] > 20 * 2**20


def test_warm_up_requests_are_full_size_and_not_measured(fake_server):
    """Issue 15: the first level is not measured on a cold server (a probe, then N full-size)."""
    url = fake_server()
    r = B.run_benchmark(url, api="generate", concurrency=[1], num_requests=3, input_len=8,
                        output_len=4, metrics_url=None, warmup=2)
    assert r["runs"][0]["completed"] == 3  # the warm-ups are not in the numbers
    seen = json.loads(urllib.request.urlopen(url + "/fake/timings").read())["seconds"]
    assert len(seen) == 1 + 2 + 3


def test_each_level_gets_new_prompts(fake_server):
    """The same prompts at the next level (or in compare's next round) would be answered from a real
    server's prefix cache, and its TTFT would look better than it is."""
    import urllib.request

    from zero2vllm.instruments.bench import run_benchmark

    url = fake_server()
    result = run_benchmark(url, api="openai", concurrency=[1, 2], num_requests=4, input_len=32, output_len=2,
                           warmup=False)
    assert [run["completed"] for run in result["runs"]] == [4, 4]
    with urllib.request.urlopen(url + "/fake/prompts") as resp:
        prompts = json.loads(resp.read())["prompts"]
    assert len(prompts) == 8 and len({json.dumps(p) for p in prompts}) == 8
