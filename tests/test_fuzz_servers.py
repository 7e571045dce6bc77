"""Issue 16's bounded fuzz run: a few hundred hostile requests per server, only to 127.0.0.1.

The cases and the counting are benchmarks/fuzz_servers.py's (its long run is in docs/benchmarks.md);
here both servers run in this process with short timeouts, on the tiny random model.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from pathlib import Path

import pytest
from model_cache import smollm2_dir, tiny_model_dir  # noqa: F401

pytest.importorskip("torch")
pytest.importorskip("h11")

REQUESTS = 300


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a busy 2-core runner, OpenMP workers that spin for a core starve the
    fuzzing client's threads (a request then takes tens of seconds); the setting is put back."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def load_fuzz():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_servers.py"
    spec = importlib.util.spec_from_file_location("fuzz_servers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def check(result: dict) -> None:
    assert result["5xx"] == 0, result
    assert result["closed_without_answer"] == 0, result
    assert result["hangs"] == 0 and result["streams_cut"] == 0, result
    assert result["idle_held"] == 0, result
    assert result["good_after"] == "200", result
    classes = result["by_class"]
    assert {"fields", "poison", "json", "http", "cross-site", "disconnect", "good"} <= set(classes), classes
    assert set(classes["good"]) == {"200"} and set(classes["cross-site"]) <= {"400", "415"}, classes


def test_naive_api_survives_the_fuzz(tiny_model_dir):  # noqa: F811
    from zero2vllm.models import load_model
    from zero2vllm.instruments.naive import NaiveServer, ServerThread, create_app

    fuzz = load_fuzz()
    model, tok, _ = load_model(str(tiny_model_dir))
    server = NaiveServer(model, tok, name="tiny", max_model_len=256, max_new_tokens_limit=64)
    with ServerThread(create_app(server), timeout=1.0, max_connections=16) as st:
        fuzz.fuzz("naive", st.port, 30, seed=1, hang_s=30, idle=0, idle_wait_s=0)  # warm-up
        before = rss_mb()
        result = fuzz.fuzz("naive", st.port, REQUESTS, seed=2, hang_s=30, idle=20, idle_wait_s=4)
        grown = rss_mb() - before
    check(result)
    assert grown < 64, grown
    assert not server.lock.locked()  # nothing left generating for clients that have gone


def test_engine_server_survives_the_fuzz(tiny_model_dir):  # noqa: F811
    from zero2vllm.engine import EngineConfig, LLMEngine
    from zero2vllm.engine.api_server import Server
    from zero2vllm.instruments.http_server import Limits

    fuzz = load_fuzz()
    engine = LLMEngine(EngineConfig(model=str(tiny_model_dir), max_model_len=256, num_kv_blocks=128, max_num_seqs=16))
    srv, ready = Server(engine, "tiny", limits=Limits(keep_alive_s=1.0, request_s=2.0)), threading.Event()
    threading.Thread(target=lambda: asyncio.run(srv.serve("127.0.0.1", 0, ready)), daemon=True).start()
    assert ready.wait(30)
    fuzz.fuzz("engine", srv.port, 30, seed=1, hang_s=30, idle=0, idle_wait_s=0)  # warm-up
    before = rss_mb()
    result = fuzz.fuzz("engine", srv.port, REQUESTS, seed=2, hang_s=30, idle=20, idle_wait_s=4)
    grown = rss_mb() - before
    check(result)
    assert grown < 64, grown
    m = engine.metrics()
    assert m["running"] == 0 and not m["waiting_ids"] and m["free_blocks"] == m["num_blocks"]
