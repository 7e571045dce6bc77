"""The naive serving API: its contract, its error cases, a fuzz run, and the lock."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time

import pytest
from model_cache import smollm2_dir, tiny_model_dir  # noqa: F401

pytest.importorskip("torch")
pytest.importorskip("flask")


def make_server(folder, **kw):
    from zero2vllm.instruments.naive import NaiveServer, ServerThread, create_app
    from zero2vllm.models import load_model

    model, tok, _ = load_model(str(folder))
    server = NaiveServer(model, tok, name=folder.name, **kw)
    return server, ServerThread(create_app(server))


def post(url, body, raw=False):
    import urllib.error
    import urllib.request

    data = body if raw else json.dumps(body).encode()
    req = urllib.request.Request(url + "/generate", data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get(url, path):
    import urllib.request

    with urllib.request.urlopen(url + path, timeout=30) as r:
        return r.status, r.read().decode()


@pytest.mark.slow
def test_smollm2_answers(smollm2_dir):
    """The real model through the API: greedy, chat template, counts and timings."""
    import torch

    torch.set_num_threads(2)
    server, st = make_server(smollm2_dir, max_model_len=512, max_new_tokens_limit=64)
    with st:
        code, out = post(st.url, {"prompt": "What is the capital of France?", "chat": True,
                                  "max_new_tokens": 12})
        assert code == 200, out
        assert "Paris" in out["text"]
        assert out["prompt_tokens"] > 5 and 1 <= out["completion_tokens"] <= 12
        assert out["finish_reason"] in ("stop", "length")
        assert out["timings"]["generate_ms"] > 0 and out["timings"]["total_ms"] >= out["timings"]["generate_ms"]
        # deterministic greedy decoding, fixed length with ignore_eos
        body = {"prompt": "The capital of France is", "max_new_tokens": 5, "ignore_eos": True}
        a, b = post(st.url, body)[1], post(st.url, body)[1]
        assert a["text"] == b["text"] and a["completion_tokens"] == 5 and a["finish_reason"] == "length"


def test_contract_errors_and_fuzz(tiny_model_dir):
    server, st = make_server(tiny_model_dir, max_model_len=64, max_new_tokens_limit=32)
    with st:
        code, health = get(st.url, "/health")
        assert code == 200 and json.loads(health)["max_model_len"] == 64
        code, out = post(st.url, {"prompt": "hello there", "max_new_tokens": 4, "ignore_eos": True})
        assert code == 200 and out["completion_tokens"] == 4 and isinstance(out["text"], str)
        code, out = post(st.url, {"prompt_token_ids": [5, 6, 7], "max_new_tokens": 3, "ignore_eos": True})
        assert code == 200 and len(out["token_ids"]) == 3 and out["prompt_tokens"] == 3

        cases = {
            b"not json": "not valid JSON",
            b"": "not valid JSON",
            b"[1, 2]": "JSON object",
            b"{}": "missing 'prompt'",
            b'{"prompt": 7}': "must be a string",
            b'{"prompt": ""}': "empty",
            b'{"prompt": "hi", "max_new_tokens": "5"}': "must be an integer",
            b'{"prompt": "hi", "max_new_tokens": 2.5}': "must be an integer",
            b'{"prompt": "hi", "max_new_tokens": true}': "must be an integer",
            b'{"prompt": "hi", "max_new_tokens": 0}': "at least 1",
            b'{"prompt": "hi", "max_new_tokens": 33}': "over this server's limit of 32",
            b'{"prompt": "hi", "temperature": "hot"}': "temperature",
            b'{"prompt": "hi", "temperature": -1}': "temperature",
            b'{"prompt": "hi", "top_p": 0}': "top_p",
            b'{"prompt": "hi", "seed": -3}': "seed",
            b'{"prompt": "hi", "ignore_eos": "yes"}': "ignore_eos",
            b'{"prompt_token_ids": [1, -2]}': "prompt_token_ids",
            b'{"prompt_token_ids": [1, 999999]}': "prompt_token_ids",
            b'{"prompt": "hi", "prompt_token_ids": [1]}': "either",
            json.dumps({"prompt": "word " * 100}).encode(): "longer than the model's context of 64",
            json.dumps({"prompt": "word " * 40, "max_new_tokens": 30}).encode(): "over the model's context",
        }
        for body, message in cases.items():
            code, out = post(st.url, body, raw=True)
            assert code == 400, (body, out)
            assert message in out["error"], (body, out)

        # fuzz: random mutations of valid bodies and random bytes; every answer is JSON 200/400
        rng = random.Random(1234)
        values = [None, True, False, 0, -1, 1, 2**70, 1e308, float("nan"), "", "x", "é\u0000😀",
                  [], [1, 2], {}, {"a": 1}, "word " * 200]
        keys = ["prompt", "max_new_tokens", "temperature", "top_p", "top_k", "seed", "ignore_eos",
                "chat", "prompt_token_ids", "junk"]
        codes = {}
        for i in range(150):
            if i % 5 == 0:
                raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
            else:
                body = {"prompt": "hi", "max_new_tokens": 2}
                for _ in range(rng.randrange(1, 4)):
                    body[rng.choice(keys)] = rng.choice(values)
                raw = json.dumps(body).encode()  # NaN becomes the (non-standard) token NaN
            code, out = post(st.url, raw, raw=True)
            assert code in (200, 400), (raw, code, out)
            assert ("error" in out) == (code == 400)
            codes[code] = codes.get(code, 0) + 1
        assert codes.get(400, 0) > 50
        # still alive and correct after all that
        code, out = post(st.url, {"prompt": "hello", "max_new_tokens": 2, "ignore_eos": True})
        assert code == 200 and out["completion_tokens"] == 2
        _, metrics = get(st.url, "/metrics")
        from zero2vllm.instruments.metrics import parse_prometheus

        m = parse_prometheus(metrics)
        assert m['z2v_requests_total{code="400",endpoint="/generate"}'] >= len(cases) + 50
        assert m["process_resident_memory_bytes"] > 50 * 2**20
        assert m["z2v_generation_tokens_total"] >= 9
        assert m["z2v_request_latency_seconds_count"] >= 150
        assert "# TYPE z2v_request_latency_seconds histogram" in metrics
        # wrong method / unknown path / oversized body: JSON errors, not HTML
        import urllib.error
        import urllib.request

        for req, want in ((urllib.request.Request(st.url + "/generate"), 405),
                          (urllib.request.Request(st.url + "/nope"), 404),
                          (urllib.request.Request(st.url + "/generate", data=b"x" * (2 << 20), method="POST"), 413)):
            with pytest.raises(urllib.error.HTTPError) as exc:
                urllib.request.urlopen(req, timeout=30)
            assert exc.value.code == want and "error" in json.loads(exc.value.read())


def test_one_request_at_a_time(tiny_model_dir):
    """The lock: concurrent requests queue; the metrics never show two inside generate."""
    server, st = make_server(tiny_model_dir)
    inside, most = [0], [0]
    real_generate = server.model.generate

    def slow_generate(*a, **k):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.2)
        try:
            return real_generate(*a, **k)
        finally:
            inside[0] -= 1

    server.model.generate = slow_generate
    results = []
    with st:
        threads = [threading.Thread(target=lambda: results.append(
            post(st.url, {"prompt": "hi", "max_new_tokens": 2}))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert most[0] == 1 and len(results) == 4
    queues = sorted(r[1]["timings"]["queue_ms"] for r in results)
    assert queues[-1] >= 3 * 200 * 0.9  # the last one waited for the three before it


def test_serve_naive_cli(tiny_model_dir, home):
    """`z2v serve naive` starts, answers, and exits on SIGTERM; a bad --model is one line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "zero2vllm", "serve", "naive", "--model", str(tiny_model_dir),
         "--port", "0", "--threads", "1"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    try:
        url = None
        deadline = time.time() + 60
        while time.time() < deadline and url is None:
            line = proc.stderr.readline()
            if not line:
                break
            if line.startswith("listening on "):
                url = line.split()[2]
        assert url, "the server did not start"
        code, out = post(url, {"prompt": "hi", "max_new_tokens": 3, "ignore_eos": True})
        assert code == 200 and out["completion_tokens"] == 3
    finally:
        proc.terminate()
        proc.wait(10)
    r = subprocess.run([sys.executable, "-m", "zero2vllm", "serve", "naive", "--model", str(home)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no config.json" in r.stderr
