"""The real thing, end to end: install vLLM into its venv, serve the embedded model, send
completions, benchmark it, compare it with the naive API, pass the lab, stop with no orphans.

Slow (an install is ~2.5 min and 2.5 GB the first time; a start ~1 min), so it runs only with
Z2V_TEST_VLLM=1. The venv is $ZERO2VLLM_VLLM_VENV when set (CI points it at a persistent
folder), else the user's own `z2v vllm install` location, so a second run reuses the install.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from model_cache import smollm2_dir  # noqa: E402,F401

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("Z2V_TEST_VLLM") != "1",
                       reason="real vLLM (2.5 GB install, ~1 min start): set Z2V_TEST_VLLM=1 to run"),
]


def persistent_venv() -> Path:
    env = os.environ.get("ZERO2VLLM_VLLM_VENV")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("zero2vllm", appauthor=False)) / "vllm-venv"


def z2v(*args: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zero2vllm", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=3) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_install_serve_complete_benchmark_compare_check(home, tmp_path, smollm2_dir):  # noqa: F811
    import psutil

    from zero2vllm.instruments.bench import run_benchmark

    env = {**os.environ, "ZERO2VLLM_VLLM_VENV": str(persistent_venv())}
    timings = {}

    t0 = time.perf_counter()
    done = z2v("vllm", "install", "--cpu", env=env, timeout=1500)
    timings["install"] = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr[-3000:]
    doctor = json.loads(z2v("vllm", "doctor", "--json", env=env, timeout=300).stdout)
    assert doctor["ok"], doctor

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    serve = subprocess.Popen([sys.executable, "-m", "zero2vllm", "vllm", "serve", "--eager", "--quiet",
                              "--port", str(port)], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.err", "w"))
    try:
        while not healthy(url):
            assert serve.poll() is None, (tmp_path / "serve.err").read_text()[-3000:]
            assert time.perf_counter() - t0 < 900, "vLLM was not healthy after 900 s"
            time.sleep(1)
        timings["healthy"] = time.perf_counter() - t0
        family = [serve.pid] + [p.pid for p in psutil.Process(serve.pid).children(recursive=True)]
        assert len(family) >= 3  # z2v, vLLM's API server, its engine core (and workers)

        # greedy completion: the answer, and the server's token counts against the tokenizer
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(smollm2_dir))
        prompt = "The capital of France is"
        out = post(url + "/v1/completions", {"model": "smollm2", "prompt": prompt, "max_tokens": 8,
                                             "temperature": 0})
        assert "Paris" in out["choices"][0]["text"]
        assert out["usage"]["completion_tokens"] == 8
        assert out["usage"]["prompt_tokens"] == len(tok(prompt)["input_ids"])
        chat = post(url + "/v1/chat/completions", {"model": "smollm2", "max_tokens": 16, "temperature": 0,
                                                   "messages": [{"role": "user", "content": "Hi!"}]})
        assert chat["choices"][0]["message"]["content"].strip()

        # the benchmark's token counts come from the server and add up
        result = run_benchmark(url, api="openai", concurrency=[1, 4], num_requests=4, input_len=32,
                               output_len=16)
        for run in result["runs"]:
            assert (run["completed"], run["failed"]) == (4, 0), run["errors"]
            assert run["total_output_tokens"] == 4 * 16
            assert 4 * 16 <= run["total_input_tokens"] <= 4 * 64  # 32 words, the server's count
            assert run["ttft_ms"] is not None and run["tpot_ms"] is not None

        # compare with the naive API (compare starts it), then the lab passes
        t1 = time.perf_counter()
        cmp_out = z2v("compare", "--vllm", url, "--concurrency", "1,4", "--requests", "4",
                      "--output-len", "8", "--input-len", "16", "--out", str(tmp_path / "cmp"),
                      env=env, timeout=900)
        timings["compare"] = time.perf_counter() - t1
        assert cmp_out.returncode == 0, cmp_out.stderr[-3000:]
        rows = [ln.split() for ln in cmp_out.stdout.splitlines()
                if ln[:1].isdigit() and ln.split()[1] in ("naive", "vllm")]
        assert [(r[0], r[1], r[2]) for r in rows] == [("1", "naive", "4/4"), ("1", "vllm", "4/4"),
                                                      ("4", "naive", "4/4"), ("4", "vllm", "4/4")]
        lab = tmp_path / "lab"
        lab.mkdir()
        (lab / "url.txt").write_text(url + "\n")
        check = z2v("check", "vllm", str(lab), env=env, timeout=300)
        assert check.returncode == 0, check.stdout[-3000:]
        assert "PASSED: 6/6" in check.stdout and "both say" in check.stdout
    finally:
        serve.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
            code = None
    assert code == 0, (tmp_path / "serve.err").read_text()[-2000:]
    deadline = time.time() + 15
    while [p for p in family if psutil.pid_exists(p)] and time.time() < deadline:
        time.sleep(0.2)
    left = [p for p in family if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert left == [], f"processes left behind: {left}"
    print("vLLM e2e timings (s):", {k: round(v, 1) for k, v in timings.items()})
