"""The Engine trace page: `z2v engine trace` saves what it ran, the dashboard draws it.

Real traces from the tiny random Llama (tests/model_cache.py): the picture must match the
saved steps (rows, steps, block tables), show a forced preemption and a prefix-cache hit, and
the Run form must validate, need the CSRF token, and save through the CLI's own code.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from html import unescape
from pathlib import Path

import pytest

from model_cache import smollm2_dir, tiny_model_dir  # noqa: F401
from web_helpers import token_of

pytest.importorskip("torch")
pytest.importorskip("flask")

PROMPTS = ["one two three four five six seven", "hi"]
# two sequences of ~7 tokens with 2-token blocks in an 8-block pool: both are admitted, then
# their decodes outgrow the pool and the newer one is preempted
TINY_POOL = ["--max-tokens", "8", "--block-size", "2", "--num-kv-blocks", "8"]


def saved_files(home: Path) -> list[Path]:
    return sorted((home / "engine-traces").glob("trace-*.json"))


@pytest.fixture
def app(home, tiny_model_dir):  # noqa: F811
    from zero2vllm.paths import db_path
    from zero2vllm.web import create_app

    app = create_app(db_path())
    app.config["Z2V_TRACE_MODEL"] = str(tiny_model_dir)
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def svg(html: str, svg_id: str) -> str:
    return re.search(rf'<svg[^>]* id="{svg_id}".*?</svg>', html, re.S).group(0)


def titles(fragment: str) -> list[str]:
    return [unescape(t) for t in re.findall(r"<title>(.*?)</title>", fragment)]


def test_cli_saves_the_trace_and_the_page_draws_it(z2v, home, client, tiny_model_dir):  # noqa: F811
    out = z2v("engine", "trace", *PROMPTS, "--model", str(tiny_model_dir), "--max-tokens", "3",
              "--block-size", "4", "--num-kv-blocks", "12", "--max-num-batched-tokens", "5").output
    [path] = saved_files(home)
    assert f"Saved to {path}" in out and "/engine/trace" in out
    record = json.loads(path.read_text())
    s = record["settings"]
    assert s["prompts"] == PROMPTS and s["model"] == str(tiny_model_dir) and s["max_tokens"] == 3
    assert (s["block_size"], s["num_kv_blocks"], s["max_num_batched_tokens"]) == (4, 12, 5)
    assert s["max_num_seqs"] == 8 and s["prefix_caching"] is True and s["repeat"] == 1
    assert record["source"] == "cli" and record["name"] == path.stem
    steps = record["rounds"][0]["steps"]
    assert any(w["kind"] == "prefill chunk" for st in steps for w in st["work"])  # budget 5 chunks the prompt

    resp = client.get("/engine/trace")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    timeline = svg(html, "timeline")
    assert f'data-steps="{len(steps)}" data-rows="2"' in timeline
    assert ">seq 0</text>" in timeline and ">seq 1</text>" in timeline and ">seq 2</text>" not in timeline
    # one cell per step in which a sequence computed something, with the CLI's words as its tooltip
    for seq in (0, 1):
        work = [(st["step"], w) for st in steps for w in st["work"] if w["seq"] == seq]
        drawn = [t for t in titles(timeline) if re.match(rf"step \d+, seq {seq}: ", t) and " pos " in t
                 and "taken from the prefix cache" not in t]
        assert len(drawn) == len(work)
        n, w = work[-1]
        blocks = "[" + ", ".join(map(str, w["block_table"])) + "]"
        assert any(t.startswith(f"step {n}, seq {seq}: {w['kind']} pos ") and f"blocks {blocks}" in t
                   and "[finished: length]" in t for t in drawn)
    assert 'data-state="waiting"' in timeline  # seq 1 waits while the budget goes to seq 0's chunks
    # the selected step's block tables: logical block i -> physical block id, and the fill
    n = 3
    w = next(w for w in steps[n - 1]["work"] if w["seq"] == 0)
    html = client.get(f"/engine/trace/{path.stem}?step={n}").get_data(as_text=True)
    table = re.search(r'<svg class="btable[^"]*"[^>]* data-seq="seq 0" data-blocks="([^"]*)"', html).group(1)
    assert table.split() == [str(b) for b in w["block_table"]]
    computed = w["positions"][1]
    for i, b in enumerate(w["block_table"]):
        fill = max(0, min(4, computed - i * 4))
        assert f"seq 0: logical block {i} (positions {4 * i}-{4 * i + 3}) -&gt; physical block {b}, {fill} of 4 slots" in html
    assert f"Step {n} of {len(steps)}" in html and f"?step={n - 1}#step" in html and f"?step={n + 1}#step" in html
    # the pool: every held block is coloured by its holder over the steps it holds it
    pool = svg(html, "pool")
    assert f'data-blocks="12" data-steps="{len(steps)}"' in pool
    first = steps[0]["work"][0]
    assert any(t.startswith(f"block {first['block_table'][0]}, step") and "held by seq 0" in t for t in titles(pool))
    # the request summary and the list of saved traces
    for req in record["rounds"][0]["requests"]:
        assert str(req["prompt_tokens"]) in html
    assert f'href="/engine/trace/{path.stem}"' in html and "Engine trace</a>" in html


def test_preemption_is_drawn(z2v, home, client, tiny_model_dir):  # noqa: F811
    z2v("engine", "trace", "one two three four five six seven", "eight nine ten eleven twelve thirteen",
        "--model", str(tiny_model_dir), *TINY_POOL)
    record = json.loads(saved_files(home)[0].read_text())
    steps = record["rounds"][0]["steps"]
    [preempt_step] = [st["step"] for st in steps if st["preempted"]][:1]
    victim = next(st["preempted"][0] for st in steps if st["preempted"])
    assert record["rounds"][0]["requests"][victim]["preemptions"] >= 1
    html = client.get(f"/engine/trace?step={preempt_step}").get_data(as_text=True)
    timeline = svg(html, "timeline")
    assert any(t.startswith(f"step {preempt_step}, seq {victim}: preempted") for t in titles(timeline))
    assert re.search(r'data-state="recompute', timeline)  # its prompt (and tokens) computed again later
    assert f"preempted: seq {victim}" in html
    row = re.search(rf'<tr data-seq="seq {victim}">.*?</tr>', html, re.S).group(0)
    assert "preempted: blocks freed" in row and "btable" not in row  # it holds no blocks now


def test_prefix_cache_hit_with_repeat_2(z2v, home, client, tiny_model_dir):  # noqa: F811
    args = [*PROMPTS, "--model", str(tiny_model_dir), "--max-tokens", "2", "--block-size", "4", "--repeat", "2"]
    z2v("engine", "trace", *args)
    record = json.loads(saved_files(home)[0].read_text())
    assert len(record["rounds"]) == 2 and record["settings"]["repeat"] == 2
    steps = [st for rd in record["rounds"] for st in rd["steps"]]
    hit = next(i for i, st in enumerate(steps, 1) if st["prefix_hit_tokens"])
    html = client.get(f"/engine/trace?step={hit}").get_data(as_text=True)
    timeline = svg(html, "timeline")
    assert f'data-steps="{len(steps)}" data-rows="4"' in timeline and ">r2 seq 0</text>" in timeline
    hits = [t for t in titles(timeline) if "prompt tokens taken from the prefix cache" in t]
    assert hits and hits[0].startswith(f"step {hit}, r2 seq 0: 4 prompt tokens")
    assert 'class="hitbar"' in timeline and 'class="round"' in timeline
    pool = svg(html, "pool")
    assert any("free but still prefix-cached" in t for t in titles(pool))  # round 1's blocks, kept
    assert "bt bt-cached" in html and "taken from the prefix cache" in html
    # without prefix caching: nothing is hit, nothing drawn as a hit
    z2v("engine", "trace", *args, "--no-prefix-caching")
    newest = saved_files(home)[-1].stem
    html = client.get(f"/engine/trace/{newest}").get_data(as_text=True)
    assert 'class="hit"' not in html and "prefix caching off" in html
    assert not any("prefix-cached" in t for t in titles(svg(html, "pool")))


def test_empty_state_says_how_to_make_a_trace(client):
    html = client.get("/engine/trace").get_data(as_text=True)
    assert "No trace saved yet" in html and "z2v engine trace &#34;The capital of France is&#34;" in html
    assert 'id="timeline"' not in html
    assert client.get("/engine/trace/trace-20200101-000000-000000").status_code == 404
    assert client.get("/engine/trace/not-a-trace").status_code == 404


def test_form_errors_csrf_and_a_good_run(client, home):
    token = token_of(client, "/engine/trace")
    good = {"prompts": "one two three four five six seven\nhi\n", "max_tokens": "2", "block_size": "4",
            "num_kv_blocks": "16", "max_num_batched_tokens": "64", "max_num_seqs": "8", "repeat": "2",
            "prefix_caching": "on", "csrf_token": token}
    for field, value, words in [("block_size", "abc", "Block size: 'abc' is not a whole number"),
                                ("num_kv_blocks", "0", "Pool blocks: 0 is out of range"),
                                ("prompts", " \n ", "Prompts: give at least one prompt")]:
        resp = client.post("/engine/trace", data={**good, field: value})
        assert resp.status_code == 422
        html = resp.get_data(as_text=True)
        assert words in unescape(html) and 'id="form-error"' in html
        assert f'value="{value}"' in html or field == "prompts"  # the form keeps what was typed
    # a prompt that can't fit the pool: the engine's own one-line reason, nothing saved
    resp = client.post("/engine/trace", data={**good, "num_kv_blocks": "1", "block_size": "1"})
    assert resp.status_code == 422 and "max_model_len" in resp.get_data(as_text=True)
    assert client.post("/engine/trace", data={k: v for k, v in good.items() if k != "csrf_token"}).status_code == 403
    assert client.post("/engine/trace", data={**good, "csrf_token": "forged"}).status_code == 403
    assert saved_files(home) == []

    resp = client.post("/engine/trace", data=good)
    assert resp.status_code == 303
    [path] = saved_files(home)
    assert resp.headers["Location"].endswith(f"/engine/trace/{path.stem}")
    record = json.loads(path.read_text())
    assert record["source"] == "dashboard" and record["settings"]["prompts"] == PROMPTS
    assert record["settings"]["repeat"] == 2 and record["settings"]["prefix_caching"] is True
    html = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert 'data-rows="4"' in html and '<tr class="on">' in html


def test_only_the_newest_traces_are_kept(home):
    from zero2vllm.engine import traces

    record = {"settings": {"prompts": ["x"]}, "rounds": [], "block_size": 4, "num_blocks": 8, "budget_tokens": 8}
    paths = [traces.save(record) for _ in range(traces.KEEP + 3)]
    left = saved_files(home)
    assert len(left) == traces.KEEP and left == sorted(paths[-traces.KEEP:])
    assert [t["name"] for t in traces.list_saved()] == [p.stem for p in reversed(paths[-traces.KEEP:])]


@pytest.mark.slow
def test_a_big_trace_stays_a_small_page_and_viewing_never_imports_torch(home, client, tiny_model_dir):  # noqa: F811
    """36 sequences, 100 blocks, ~300 steps with preemptions: the page must stay light, and
    showing it (a fresh process) must not load torch."""
    from zero2vllm.engine.trace import run_trace

    prompts = [f"request number {i} says hello to the engine" for i in range(36)]
    record, path = run_trace({"prompts": prompts, "model": str(tiny_model_dir), "max_tokens": 40, "block_size": 4,
                              "num_kv_blocks": 100, "max_num_batched_tokens": 96, "max_num_seqs": 36},
                             root=home)
    steps = sum(len(rd["steps"]) for rd in record["rounds"])
    assert steps > 60 and sum(r["preemptions"] for r in record["rounds"][0]["requests"]) > 0
    started = time.perf_counter()
    resp = client.get(f"/engine/trace?step={steps // 2}")
    seconds = time.perf_counter() - started
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and 'data-rows="36"' in html
    assert len(html) < 1_500_000, len(html)
    assert seconds < 5, seconds
    code = ("import sys; from zero2vllm.web import create_app; from zero2vllm.paths import db_path; "
            "c = create_app(db_path()).test_client(); r = c.get('/engine/trace'); "
            "assert r.status_code == 200 and b'id=\"timeline\"' in r.data, r.status_code; "
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
