"""trace-step: the parts that need no vLLM: reading hook.py, the missing-vLLM message, the
engine comparison. The learner's hook inside a real offline vLLM run (Z2V_TEST_VLLM=1) is
dev-check's (tests/test_lab_devcheck.py): one run per case there."""

from __future__ import annotations

from zero2vllm.labs import get_lab
from zero2vllm.labs.check import run_check
from zero2vllm.labs.trace_step.compare import describe

LAB = get_lab("trace-step")


def failed(result) -> dict[str, str]:
    return {c["name"]: c["detail"] for c in result.criteria if not c["passed"]}


def test_hook_without_on_step_and_without_vllm(home, tmp_path, monkeypatch):
    monkeypatch.setenv("ZERO2VLLM_VLLM_VENV", str(tmp_path / "no-venv"))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "hook.py").write_text("def record(out):\n    return {}\n")
    bad = failed(run_check(LAB, tmp_path / "a"))
    assert "defines no on_step" in bad["hook.py"] and bad["vLLM run"].startswith("not run")
    bad = failed(run_check(LAB, LAB.scaffold_dir, only=["hook.py", "vLLM run"]))
    assert "hook.py" not in bad and "no installed vLLM found" in bad["vLLM run"]


def test_describe_names_same_and_different():
    same, differ = describe([{0: 5, 1: 11}, {0: 1, 1: 16}], [{0: 5, 1: 11}, {0: 1, 1: 15}], [5, 40], [5, 40])
    assert "prompt lengths [5, 40] tokens (the same tokenizer)" in same
    assert "the first 1 step(s) schedule the same tokens per request" in same
    assert "step 2: vLLM {0: 1, 1: 16}, engine {0: 1, 1: 15}" in differ
    same, differ = describe([{0: 5}], [{0: 5}], [5], [5])
    assert not differ and "all 1 steps schedule the same tokens per request" in same


def test_block_ids_compared_with_the_null_block_explained():
    from zero2vllm.labs.trace_step.compare import describe_blocks

    same, differ = describe_blocks({0: [1], 1: [2, 3]}, {0: [0], 1: [1, 2]})
    assert not same and "null block" in differ[0]
    assert describe_blocks({0: [1]}, {0: [1]}) == (["block ids per request {0: [1]}"], [])


def test_engine_trace_is_kept_under_a_key_of_what_it_depends_on(home, tmp_path, monkeypatch):
    """The compare criterion's engine side is read back while the engine, model, settings and
    libraries are unchanged, and traced again when one of them changes."""
    import json

    from zero2vllm.engine import trace
    from zero2vllm.labs.trace_step import compare

    calls = []

    def fake_run_trace(settings, save):
        calls.append(settings)
        return {"rounds": [{"steps": [], "requests": []}], "n": len(calls)}, None

    monkeypatch.setattr(trace, "run_trace", fake_run_trace)
    monkeypatch.setattr("zero2vllm.models.ensure_model_dir", lambda spec: tmp_path / "model")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    cache = tmp_path / "cache"
    first, cached = compare.engine_trace(cache)
    assert (first["n"], cached) == (1, False) and calls[0]["prompts"] == compare.PROMPTS
    assert [json.loads(p.read_text()) for p in cache.glob("*.json")] == [first]
    again, cached = compare.engine_trace(cache)
    assert (again, cached, len(calls)) == (first, True, 1)
    monkeypatch.setitem(compare.SETTINGS, "max_tokens", 9)
    assert compare.engine_trace(cache)[0]["n"] == 2
    (tmp_path / "model" / "config.json").write_text('{"changed": 1}')
    assert compare.engine_trace(cache)[0]["n"] == 3 and len(list(cache.glob("*.json"))) == 3
    for kept in cache.glob("*.json"):  # a damaged file is traced again, not trusted
        kept.write_text("[1, 2]")
    assert compare.engine_trace(cache) == ({"rounds": [{"steps": [], "requests": []}], "n": 4}, False)
