"""The engine's OpenAI-compatible server and the `z2v engine` / `z2v serve engine` commands.

A tiny random Llama with SmolLM2's tokenizer keeps this fast: the contract (streaming, usage,
errors, metrics, disconnects) does not depend on the weights.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from model_cache import smollm2_dir  # noqa: F401

torch = pytest.importorskip("torch")
httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def tiny_dir(smollm2_dir, tmp_path_factory) -> Path:  # noqa: F811
    """A 2-layer random Llama with SmolLM2's vocabulary and tokenizer files."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                      tie_word_embeddings=True, eos_token_id=2, bos_token_id=1)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-smol")
    LlamaForCausalLM(cfg).save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (smollm2_dir / name).exists():
            shutil.copy(smollm2_dir / name, path / name)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_dir):
    """The server in a thread of this process: (base_url, engine)."""
    from zero2vllm.engine import EngineConfig, LLMEngine
    from zero2vllm.engine.server import Server

    engine = LLMEngine(EngineConfig(model=str(tiny_dir), max_model_len=256, num_kv_blocks=64, max_num_seqs=8))
    port, ready = free_port(), threading.Event()
    srv = Server(engine, "tiny")
    threading.Thread(target=lambda: asyncio.run(srv.serve("127.0.0.1", port, ready)), daemon=True).start()
    assert ready.wait(30)
    return f"http://127.0.0.1:{port}", engine


def sse(base, body) -> list:
    events = []
    with httpx.stream("POST", base + "/v1/completions", json={**body, "stream": True}, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        for line in r.iter_lines():
            if line.startswith("data: "):
                data = line[6:]
                events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_completions_stream_and_usage(server):
    base, engine = server
    assert httpx.get(base + "/health").json() == {"status": "ok"}
    models = httpx.get(base + "/v1/models").json()
    assert models["data"][0]["id"] == "tiny" and models["data"][0]["max_model_len"] == 256
    body = {"prompt": "The capital of France is", "max_tokens": 7, "temperature": 0, "ignore_eos": True}
    plain = httpx.post(base + "/v1/completions", json=body, timeout=30).json()
    prompt_len = len(engine.tokenizer("The capital of France is").input_ids)
    assert plain["usage"] == {"prompt_tokens": prompt_len, "completion_tokens": 7, "total_tokens": prompt_len + 7}
    assert plain["choices"][0]["finish_reason"] == "length" and plain["object"] == "text_completion"
    events = sse(base, {**body, "stream_options": {"include_usage": True}})
    assert events[-1] == "[DONE]"
    chunks, usage = events[:-2], events[-2]
    assert len(chunks) == 7 and all(len(c["choices"]) == 1 for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 6 + ["length"]
    assert usage["choices"] == [] and usage["usage"] == plain["usage"]
    assert "".join(c["choices"][0]["text"] for c in chunks) == plain["choices"][0]["text"]  # greedy: same text
    # without include_usage: no usage chunk; token-id prompts work too
    events = sse(base, {"prompt": [504, 3575, 282], "max_tokens": 3, "temperature": 0.8, "ignore_eos": True})
    assert len(events) == 4 and all("usage" not in e for e in events[:-1])


def test_bad_requests_get_openai_errors(server):
    base, _ = server
    post = lambda body, **kw: httpx.post(base + "/v1/completions", timeout=10, **({"json": body} | kw))  # noqa: E731
    cases = [
        (post(None, content=b"{not json"), 400, "JSON"),
        (post({"max_tokens": 3}), 400, "prompt"),
        (post({"prompt": "hi", "max_tokens": 1000}), 400, "max_model_len"),
        (post({"prompt": "hi", "max_tokens": "3"}), 400, "max_tokens"),
        (post({"prompt": "hi", "top_p": 0.5}), 400, "top_p"),
        (post({"prompt": "hi", "min_tokens": 9, "max_tokens": 2}), 400, "min_tokens"),
        (post({"prompt": [1, 99999999]}), 400, "token ids"),
        (post({"prompt": "hi", "model": "gpt-4"}), 404, "does not exist"),
        (httpx.get(base + "/v1/completions"), 405, "not an endpoint"),
        (httpx.get(base + "/nope"), 404, "not an endpoint"),
    ]
    for resp, status, words in cases:
        assert resp.status_code == status, resp.text
        assert words in resp.json()["error"]["message"]
    assert httpx.get(base + "/health").status_code == 200  # still alive


def test_concurrent_streams_metrics_and_disconnects(server):
    base, engine = server

    async def many():
        async with httpx.AsyncClient(timeout=60) as client:
            async def one(i):
                body = {"prompt": "word " * (5 + 7 * i), "max_tokens": 12, "ignore_eos": True, "stream": True,
                        "temperature": 0}
                n = 0
                async with client.stream("POST", base + "/v1/completions", json=body) as r:
                    async for line in r.aiter_lines():
                        n += line.startswith("data: {")
                return n
            return await asyncio.gather(*(one(i) for i in range(8)))

    assert asyncio.run(many()) == [12] * 8
    # a client that hangs up mid-stream: its sequence is aborted and its blocks come back
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as s:
        body = json.dumps({"prompt": "hello " * 40, "max_tokens": 200, "ignore_eos": True, "stream": True})
        s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
        received = b""
        while b"data:" not in received:
            received += s.recv(4096)
    deadline = time.time() + 20
    while time.time() < deadline and engine.block_manager.num_free_blocks != engine.block_manager.num_blocks:
        time.sleep(0.1)
    metrics = httpx.get(base + "/metrics").text
    values = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#"))
    assert float(values['vllm:num_requests_running{model_name="tiny"}']) == 0
    assert float(values['z2v_engine_kv_blocks_used{model_name="tiny"}']) == 0
    assert float(values['z2v_engine_kv_blocks_free{model_name="tiny"}']) == 64
    assert float(values['vllm:generation_tokens_total{model_name="tiny"}']) >= 8 * 12
    for name in ("vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:num_preemptions_total",
                 "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"):
        assert f'{name}{{model_name="tiny"}}' in values
    # the sums behind the utilisation gauges agree with the engine's own counters
    stats = engine.stats
    value = lambda name: float(values[f'{name}{{model_name="tiny"}}'])  # noqa: E731
    assert value("z2v_engine_kv_steps_total") == stats.kv_steps > 0
    assert value("z2v_engine_kv_utilization_sum_total") == pytest.approx(stats.kv_util_sum)
    assert value("z2v_engine_kv_utilization") == pytest.approx(stats.kv_util_sum / stats.kv_steps)
    assert 0 < value("z2v_engine_kv_utilization_contiguous") < value("z2v_engine_kv_utilization") <= 1


def test_z2v_bench_measures_the_engine(server):
    from zero2vllm.instruments.bench import run_benchmark

    base, _ = server
    result = run_benchmark(base, api="openai", concurrency=[4], num_requests=8, input_len=20, output_len=10,
                           metrics_url=None)
    run = result["runs"][0]
    assert run["completed"] == 8 and run["output_throughput"] > 0
    assert run["total_output_tokens"] == 80 if "total_output_tokens" in run else True
    assert run["ttft_ms"]["median"] > 0 and run["tpot_ms"]["median"] > 0


def test_engine_trace_command(tiny_dir, z2v):
    out = z2v("engine", "trace", "one two three four five six seven", "hi", "--model", str(tiny_dir),
              "--max-tokens", "3", "--block-size", "4", "--num-kv-blocks", "6", "--max-num-batched-tokens", "5",
              "--repeat", "2").output
    assert "step 1:" in out and "prefill chunk" in out and "decode" in out and "pool " in out
    assert "=== round 2 ===" in out and "from cache" in out
    data = json.loads(z2v("engine", "trace", "hello there", "--model", str(tiny_dir), "--max-tokens", "2",
                          "--json").output)
    assert data["steps"][0]["work"][0]["kind"] == "prefill" and len(data["requests"]) == 1
    bad = z2v("engine", "trace", "x", "--model", "/no/such/folder", expect=2)
    assert "no such folder" in bad.output


@pytest.mark.slow
def test_compare_starts_the_engine_and_reports_its_kv_utilisation(tiny_dir, z2v, home, tmp_path):
    out = z2v("compare", "--no-naive", "--no-vllm", "--engine", "--model", str(tiny_dir), "--concurrency", "1,4",
              "--requests", "4", "--input-len", "20", "--output-len", "24", "--out", str(tmp_path / "cmp")).output
    assert "starting zero2vllm's engine on http://127.0.0.1:" in out
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    (engine,) = data["targets"]
    assert engine["name"] == "engine" and engine["kind"] == "engine" and engine["error"] is None
    for run in engine["runs"]:
        assert run["completed"] == 4 and run["total_output_tokens"] == 4 * 24
        sm = run["server_metrics"]
        # ~20-token prompts + 24 new tokens in 16-token blocks: well above a contiguous 256-token slab
        # per request, and below 100% (every last block has free slots at some step)
        assert 0.5 < sm["kv_util"] < 1.0 and 0 < sm["kv_util_contiguous"] < 0.25
    text = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| KV util |" in text and "of its allocated KV slots held tokens" in text
    from zero2vllm.paths import db_path
    from zero2vllm.tracker.store import Store

    (run,) = Store.open(db_path()).lab_runs("vllm", kind="compare")
    assert run["passed"] and run["criteria"][0]["name"] == "engine measured" and run["criteria"][0]["passed"]
    # the engine compare started is gone
    url = engine["url"]
    with pytest.raises(httpx.HTTPError):
        httpx.get(url + "/health", timeout=1)


@pytest.mark.slow
def test_serve_engine_command_starts_answers_and_stops(tiny_dir, home):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "zero2vllm", "serve", "engine", "--model", str(tiny_dir),
                             "--port", str(port), "--max-model-len", "128"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/completions", json={"prompt": "hi", "max_tokens": 2}, timeout=10)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
        # a second server on the same port: a one-line error, exit code 2
        clash = subprocess.run([sys.executable, "-m", "zero2vllm", "serve", "engine", "--model", str(tiny_dir),
                                "--port", str(port)], capture_output=True, text=True, env=env, timeout=120)
        assert clash.returncode == 2 and "pick another --port" in clash.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.returncode in (0, -signal.SIGINT)
