"""The model runner on a tiny random Llama saved in Hugging Face format (fast, no SmolLM2 needed).

Covers the loader (fused q/k/v and gate/up, untied head, GQA, Llama 3 RoPE scaling), the CUDA
graph code path (on the CPU a stand-in replays the padded static buffers), sampling, min_tokens,
and the Triton decode kernel when Triton is installed (interpreted on the CPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from zero2vllm.engine import EngineConfig, LLMEngine, SamplingParams  # noqa: E402

PROMPT_LENS = (1, 5, 16, 17, 40, 9)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
                      tie_word_embeddings=False, initializer_range=0.3, rope_theta=500000.0,
                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).eval().save_pretrained(path)
    return path


def prompts():
    gen = torch.Generator().manual_seed(1)
    return [torch.randint(3, 300, (n,), generator=gen).tolist() for n in PROMPT_LENS]


def engine_for(path, **kw) -> LLMEngine:
    kw = {"max_model_len": 128, "num_kv_blocks": 64, "block_size": 8, **kw}
    return LLMEngine(EngineConfig(model=str(path), **kw), load_tokenizer=False)


def hf_gap(path, prompt_ids, out_ids) -> float:
    """How far each chosen token's HF logit is below HF's best (0.0: every token is HF's argmax)."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    worst = 0.0
    for p, o in zip(prompt_ids, out_ids):
        with torch.inference_mode():
            logits = model(torch.tensor([p + o])).logits[0, len(p) - 1:-1]
        chosen = logits.gather(1, torch.tensor(o)[:, None]).squeeze(1)
        worst = max(worst, (logits.max(1).values - chosen).max().item())
    return worst


def test_loader_and_paths_match_hf(tiny_dir):
    ps = prompts()
    engine = engine_for(tiny_dir)
    outs = [o["token_ids"] for o in engine.generate(ps, SamplingParams(max_tokens=12, ignore_eos=True))]
    assert all(len(o) == 12 for o in outs)
    assert hf_gap(tiny_dir, ps, outs) < 1e-4
    # the same through the CUDA-graph code path: decode steps replay padded static buffers
    graphed = engine_for(tiny_dir, max_num_seqs=8)
    graphed.runner.capture_cuda_graphs()
    assert sorted(graphed.runner.graphs) == [1, 2, 4, 8]
    replays = []
    real_replay = graphed.runner._replay_graph
    graphed.runner._replay_graph = lambda seqs: replays.append(len(seqs)) or real_replay(seqs)
    got = [o["token_ids"] for o in graphed.generate(ps, SamplingParams(max_tokens=12, ignore_eos=True))]
    assert got == outs
    assert 6 in replays and len(replays) >= 10  # batch of 6 padded into the graph of 8


def test_sampling_min_tokens_and_stop(tiny_dir):
    engine = engine_for(tiny_dir)
    p = prompts()[2]
    greedy = engine.generate([p], SamplingParams(max_tokens=6, ignore_eos=True))[0]["token_ids"]
    # make the greedy first token an EOS: generation stops at once, unless min_tokens holds it off
    engine.eos_token_ids = (greedy[0],)
    assert engine.generate([p], SamplingParams(max_tokens=6))[0] == {
        "token_ids": greedy[:1], "finish_reason": "stop", "text": None}
    held = engine.generate([p], SamplingParams(max_tokens=6, min_tokens=3))[0]["token_ids"]
    assert len(held) >= 3 and greedy[0] not in held[:3]
    stopped = engine.generate([p], SamplingParams(max_tokens=6, ignore_eos=True, stop_token_ids=(greedy[1],)))[0]
    assert stopped["token_ids"] == greedy[:2] and stopped["finish_reason"] == "stop"
    # temperature: valid tokens, not always the greedy ones
    draws = engine.generate([p] * 8, SamplingParams(max_tokens=6, temperature=1.5, ignore_eos=True))
    assert all(0 <= t < 300 for d in draws for t in d["token_ids"])
    assert any(d["token_ids"] != greedy for d in draws)


def test_graph_path_holds_eos_back_like_the_eager_path(tiny_dir):
    """The decode graph takes the argmax itself; a row held by min_tokens must still go through the logits."""
    p = prompts()[2]
    eager, graphed = engine_for(tiny_dir), engine_for(tiny_dir, max_num_seqs=8)
    graphed.runner.capture_cuda_graphs()
    greedy = eager.generate([p], SamplingParams(max_tokens=6, ignore_eos=True))[0]["token_ids"]
    for engine in (eager, graphed):
        engine.eos_token_ids = (greedy[1],)  # the second greedy token is EOS: held back until 4 tokens
    held = [e.generate([p], SamplingParams(max_tokens=6, min_tokens=4))[0]["token_ids"] for e in (eager, graphed)]
    assert held[0] == held[1]
    assert len(held[1]) >= 4 and greedy[1] not in held[1][:4]
    assert graphed.generate([p], SamplingParams(max_tokens=6))[0]["token_ids"] == greedy[:2]  # not held: stops


def _step_all(engine, after_step=None):
    """Step until done, calling after_step(engine, seqs) between steps, where nothing may hold a
    PENDING token; then every block must be back in the pool."""
    from zero2vllm.engine.sequence import PENDING

    seqs = list(engine.scheduler.waiting)
    while engine.has_work():
        engine.step()
        assert not any(PENDING in s.token_ids for s in seqs)
        if after_step:
            after_step(engine, seqs)
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks
    return [(s.completion_token_ids, s.finish_reason) for s in seqs], engine


def test_async_scheduling_gives_what_plain_steps_give(tiny_dir):
    """Async steps launch a decode graph before reading the step before: a sequence's EOS or stop
    token is seen one step late, so it was planned once too often. Every request must still get
    the tokens and finish reason of plain steps: EOS, a stop token, min_tokens and temperature rows
    (which run the plain way), preemption in a small pool, an abort while a step is in flight, and
    a new prompt arriving just as a stop is in flight (the step after is a plain one)."""
    ps = prompts()
    greedy = [o["token_ids"] for o in engine_for(tiny_dir).generate(ps, SamplingParams(max_tokens=10,
                                                                                       ignore_eos=True))]
    # an EOS for sequence 1 and a stop token for sequence 2, each first produced at token 5 or later
    (i, eos), (k, stop) = (next((j, t) for j, t in enumerate(out) if j >= 4 and t not in out[:j])
                           for out in greedy[1:3])

    def run(async_scheduling, blocks, after_step=None, temperature=0.0):
        engine = engine_for(tiny_dir, max_num_seqs=8, num_kv_blocks=blocks, async_scheduling=async_scheduling)
        engine.eos_token_ids = (eos,)
        engine.runner.capture_cuda_graphs()
        kinds = [dict(ignore_eos=True), dict(), dict(stop_token_ids=(stop,), ignore_eos=True), dict(min_tokens=3),
                 dict(max_tokens=7), dict(temperature=temperature)]
        for p, kw in zip(ps, kinds):
            engine.add_request(p, SamplingParams(**{"max_tokens": 10, **kw}))
        return _step_all(engine, after_step)

    def abort_5(engine, seqs):  # as soon as it has 5 tokens (in async steps: the 6th is being computed)
        if not seqs[5].is_finished and seqs[5].num_completion_tokens >= 5:
            assert engine.inflight is not None or not engine.async_scheduling  # it is in a launched step
            engine.abort(seqs[5])

    def arrive_at_eos(engine, seqs):  # a new prompt when sequence 1's EOS is on the GPU: a plain step next
        if seqs[1].num_completion_tokens == i and len(seqs) == 6:
            seqs.append(engine.add_request(ps[4], SamplingParams(max_tokens=4)))

    plain = {}
    for blocks, after_step in ((64, None), (12, None), (64, abort_5), (64, arrive_at_eos)):
        (plain[after_step], _), (fast, engine) = run(False, blocks, after_step), run(True, blocks, after_step)
        assert fast == plain[after_step], (blocks, after_step)
        assert engine.runner.launches >= 4, engine.runner.launches  # the async path ran
        if blocks == 12:
            assert engine.scheduler.num_preemptions > 0
    assert plain[None][1] == (greedy[1][:i + 1], "stop") and plain[None][2] == (greedy[2][:k + 1], "stop")
    assert plain[abort_5][5][1] == "abort" and len(plain[abort_5][5][0]) == 5
    assert len(plain[arrive_at_eos]) == 7 and plain[arrive_at_eos][6][1] == "length"
    # a sampled row makes every step it is in a plain one (the graph only takes the argmax)
    sampled, _ = run(True, 64, temperature=1.0)
    assert sampled[:5] == plain[None][:5]


def test_requests_that_cannot_fit_are_refused(tiny_dir):
    engine = engine_for(tiny_dir)
    with pytest.raises(ValueError, match="max_model_len"):
        engine.add_request(list(range(3, 120)), SamplingParams(max_tokens=20))
    with pytest.raises(ValueError, match="token ids"):
        engine.add_request([5, 999], SamplingParams())
    with pytest.raises(ValueError, match="tokenizer"):
        engine.add_request("text needs a tokenizer", SamplingParams())


def test_kv_utilisation_is_counted_against_a_contiguous_allocation(tiny_dir):
    engine = engine_for(tiny_dir, max_num_seqs=8)
    gen = torch.Generator().manual_seed(2)
    prompts_ = [torch.randint(3, 300, (40,), generator=gen).tolist() for _ in range(8)]
    engine.generate(prompts_, SamplingParams(max_tokens=24, ignore_eos=True))
    kv = engine.stats.kv_summary()
    # 8-token blocks and 40-64 tokens per sequence: at most 7 empty slots in each last block
    assert 1 - 7 / 40 < kv["paged"] <= 1.0
    assert kv["contiguous_max_len"] < kv["contiguous_prompt_plus_max_tokens"] < kv["paged"]
    assert engine.stats.tokens_generated == 8 * 24 and engine.stats.requests_finished == 8


@pytest.mark.slow
def test_benchmark_scripts_run_on_the_cpu(tiny_dir):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    offline = subprocess.run([sys.executable, str(root / "benchmarks" / "engine_offline.py"), "--model", str(tiny_dir),
                              "--seqs", "1,4", "--input-len", "20", "--output-len", "8"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert offline.returncode == 0, offline.stderr[-2000:]
    rows = [line.split() for line in offline.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "4"] and all(float(r[1]) > 0 for r in rows)
    gpu = subprocess.run([sys.executable, str(root / "benchmarks" / "engine_gpu.py"), "--tiny", "--device", "cpu",
                          "--http", "--port", "0"], capture_output=True, text=True, env=env, timeout=300)
    assert gpu.returncode == 0, gpu.stderr[-2000:]
    result = json.loads(gpu.stdout.strip().splitlines()[-1])
    assert result["check_ok"] is True and result["output_tok_s"] > 0 and result["single_tpot_ms"] > 0
    assert result["http"]["plain"]["completed"] == result["requests"]  # on the CPU: no graphs, plain steps only


KERNEL_CHECK = """
import sys, torch
from zero2vllm.engine import EngineConfig, LLMEngine, SamplingParams
from zero2vllm.engine.kernels.triton_attention import load_decode_kernel
for kv_heads, heads, dtype in ((3, 9, torch.float32), (8, 32, torch.float32), (2, 2, torch.bfloat16)):
    cache = torch.zeros(20, 16, 2, kv_heads, 64, dtype=dtype)
    assert load_decode_kernel(cache, heads) is not None, (kv_heads, heads, dtype)
# the GPU decode path on the CPU: Triton kernel inside the (stand-in) CUDA graphs, padded rows included
prompts = [[5, 6, 7], list(range(3, 40)), [9] * 17]
def run(kernel):
    engine = LLMEngine(EngineConfig(model=sys.argv[1], max_model_len=128, num_kv_blocks=64, max_num_seqs=4),
                       load_tokenizer=False)
    calls = []
    if kernel:
        fn = load_decode_kernel(engine.runner.kv_cache[0], 4)
        engine.runner.decode_kernel = lambda *a: calls.append(1) or fn(*a)
        engine.runner.capture_cuda_graphs()
    out = [o["token_ids"] for o in engine.generate(prompts, SamplingParams(max_tokens=6, ignore_eos=True))]
    return out, len(calls)
(with_kernel, calls), (without, _) = run(True), run(False)
assert with_kernel == without and calls >= 10, (with_kernel, without, calls)
print("kernel ok")
"""


@pytest.mark.slow
def test_triton_decode_kernel_agrees_with_pytorch_when_interpreted(tiny_dir):
    pytest.importorskip("triton")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", KERNEL_CHECK, str(tiny_dir)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert "kernel ok" in proc.stdout, proc.stderr[-2000:]


@pytest.mark.parametrize("lens,starts", [([5, 9, 3], [0, 0, 0]),     # whole prompts, padded: is_causal
                                         ([6, 6], [0, 0]),           # whole prompts, equal: no padding at all
                                         ([4, 7], [16, 3])])         # after a cached prefix / a chunk: the mask
def test_prompt_attention_through_block_tables_equals_dense_causal_attention(lens, starts):
    """Each prompt token attends to its sequence's earlier tokens only, wherever its blocks lie."""
    import torch.nn.functional as F

    from zero2vllm.engine.attention import build_group, gather_attention

    torch.manual_seed(0)
    bs, kvh, heads, d, num_blocks = 4, 2, 4, 8, 24
    cache = torch.randn(num_blocks + 1, bs, 2, kvh, d)
    tables, order = [], torch.randperm(num_blocks).tolist()
    for s, n in zip(starts, lens):
        need = -(-(s + n) // bs)
        tables.append(order[:need])
        order = order[need:]
    group = build_group(tables, starts, lens, bs, num_blocks, "cpu", decode=False)
    assert group.causal == (not any(starts))
    q = torch.randn(sum(lens), heads, d)
    out = gather_attention(q, cache, group)
    row = 0
    for table, s, n in zip(tables, starts, lens):
        kv = cache[table].reshape(-1, 2, kvh, d)[: s + n]                     # this sequence's tokens, in order
        k, v = (kv[:, i].transpose(0, 1).repeat_interleave(heads // kvh, 0) for i in (0, 1))
        qs = q[row:row + n].transpose(0, 1)                                   # [heads, n, d]
        allowed = torch.arange(s + n)[None, :] <= (s + torch.arange(n))[:, None]
        want = F.scaled_dot_product_attention(qs, k, v, attn_mask=allowed).transpose(0, 1).reshape(n, -1)
        torch.testing.assert_close(out[row:row + n], want, rtol=1e-5, atol=1e-5)
        row += n


def test_decode_attention_through_block_tables_equals_dense_attention():
    """One new token per sequence, contexts of different lengths in scattered blocks."""
    import torch.nn.functional as F

    from zero2vllm.engine.attention import build_group, gather_attention

    torch.manual_seed(1)
    bs, kvh, heads, d, num_blocks = 4, 2, 6, 8, 30
    cache = torch.randn(num_blocks + 1, bs, 2, kvh, d)
    lens, order, tables = [3, 13, 8], torch.randperm(num_blocks).tolist(), []
    for n in lens:
        tables.append(order[:-(-n // bs)])
        order = order[len(tables[-1]):]
    group = build_group(tables, [n - 1 for n in lens], [1] * len(lens), bs, num_blocks, "cpu", decode=True)
    q = torch.randn(len(lens), heads, d)
    out = gather_attention(q, cache, group)
    for i, (table, n) in enumerate(zip(tables, lens)):
        kv = cache[table].reshape(-1, 2, kvh, d)[:n]
        k, v = (kv[:, j].transpose(0, 1).repeat_interleave(heads // kvh, 0) for j in (0, 1))
        want = F.scaled_dot_product_attention(q[i][:, None], k, v).reshape(-1)   # heads in HF's order
        torch.testing.assert_close(out[i], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("heads,kvh,bs,d", [(9, 3, 16, 64),   # SmolLM2's shape
                                            (4, 4, 4, 8),     # no grouping, small blocks
                                            (8, 2, 8, 32)])
def test_cpu_decode_kernel_equals_dense_attention(heads, kvh, bs, d):
    """The C++ kernel reads K/V in place through block tables; it must give dense attention's result."""
    import shutil

    import torch.nn.functional as F

    from zero2vllm.engine.attention import build_group
    from zero2vllm.engine.kernels.cpu_kernels import load_cpu_decode_kernel

    if not (shutil.which("g++") or shutil.which("c++")):
        pytest.skip("no C++ compiler: the engine falls back to the PyTorch path (tested above)")
    torch.manual_seed(2)
    num_blocks = 60
    cache = torch.randn(num_blocks + 1, bs, 2, kvh, d)
    kernel = load_cpu_decode_kernel(cache, heads)
    assert kernel is not None  # a compiler is here, so it must build and pass its own check
    lens, order, tables = [1, bs, bs + 1, 7 * bs - 2, 3], torch.randperm(num_blocks).tolist(), []
    for n in lens:
        tables.append(order[:-(-n // bs)])
        order = order[len(tables[-1]):]
    group = build_group(tables, [n - 1 for n in lens], [1] * len(lens), bs, num_blocks, "cpu", decode=True)
    wide = torch.randn(len(lens), heads + 2 * kvh, d)  # q as the engine passes it: a view of q|k|v rows
    q = wide[:, :heads]
    out = kernel(q, cache, group)
    for i, (table, n) in enumerate(zip(tables, lens)):
        kv = cache[table].reshape(-1, 2, kvh, d)[:n]
        k, v = (kv[:, j].transpose(0, 1).repeat_interleave(heads // kvh, 0) for j in (0, 1))
        want = F.scaled_dot_product_attention(q[i][:, None], k, v).squeeze(1)
        torch.testing.assert_close(out[i], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 16, 300])
def test_cpu_fused_ops_give_what_the_pytorch_ops_give(rows):
    """The C++ versions of model.py's @fused functions, on SmolLM2's shapes and on inputs that are not
    contiguous (a slice, as the engine may pass), against the PyTorch functions they replace."""
    import shutil

    from zero2vllm.engine import model as M
    from zero2vllm.engine.config import ModelConfig
    from zero2vllm.engine.kernels.cpu_kernels import load_cpu_fused_ops

    if not (shutil.which("g++") or shutil.which("c++")):
        pytest.skip("no C++ compiler: the engine keeps the PyTorch ops")
    ops = load_cpu_fused_ops()
    assert sorted(ops) == ["add_rms_norm", "rope_qkv", "silu_mul"]
    torch.manual_seed(rows)
    h, kvh, d, hidden, inter = 9, 3, 64, 576, 1536
    cos, sin = M.rope_tables(ModelConfig(100, hidden, inter, 1, h, kvh, d, rope_theta=1e5), 2048)
    pos = torch.randint(0, 2048, (rows,))
    wide = torch.randn(rows, 2 * hidden) * 4
    cases = {"add_rms_norm": (wide[:, :hidden], torch.randn(rows, hidden), torch.rand(hidden) + 0.5, 1e-5),
             "silu_mul": (torch.randn(rows, 2 * inter) * 20,),
             "rope_qkv": (torch.randn(rows, (h + 2 * kvh) * d), cos[pos].unsqueeze(1), sin[pos].unsqueeze(1), h, kvh, d)}
    for name, args in cases.items():
        got, want = ops[name](*args), getattr(M, name).python(*args)
        got, want = ((got,), (want,)) if name == "silu_mul" else (got, want)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5, msg=name)


def test_cpu_fused_ops_that_disagree_are_not_used(monkeypatch, capsys):
    """A C++ op that differs from its PyTorch version (a miscompile, a wrong formula) is refused at load."""
    from zero2vllm.engine.kernels import cpu_kernels

    real = cpu_kernels.fused_ops

    def wrong(path):
        ops = real(path)
        ops["silu_mul"] = lambda gate_up: torch.sigmoid(gate_up.chunk(2, -1)[0]) * gate_up.chunk(2, -1)[1]
        return ops

    monkeypatch.setattr(cpu_kernels, "fused_ops", wrong)
    assert cpu_kernels.load_cpu_fused_ops() == {}
    assert "C++ fused ops unusable" in capsys.readouterr().err


HUGE_PAGES_PROBE = """
from pathlib import Path
import torch
from zero2vllm.engine.model_runner import use_huge_pages

def huge_kb():
    return int(Path("/proc/self/smaps_rollup").read_text().split("AnonHugePages:")[1].split()[0])

weights = torch.ones(48 << 20 >> 2)  # 48 MB, filled: like weights already loaded
pool = torch.empty(64 << 20 >> 2)    # 64 MB, not yet touched: like the KV pool
before = huge_kb()
moved = use_huge_pages(pool)
pool.zero_()
print(moved, huge_kb() - before, weights.sum().item() == weights.numel() and pool.abs().sum().item() == 0)
"""


def test_huge_pages_back_what_was_loaded_and_what_will_be_written():
    """use_huge_pages collapses filled memory (the loaded weights) into 2 MB pages, and marks the KV pool,
    still untouched, so zeroing it faults in 2 MB pages; both show in the kernel's own count. In a fresh
    process: one that already ran an engine reuses freed memory that is on huge pages already."""
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not thp.exists() or "[never]" in thp.read_text():
        pytest.skip("no transparent huge pages here: the engine keeps 4 KB pages")
    out = subprocess.run([sys.executable, "-c", HUGE_PAGES_PROBE], capture_output=True, text=True, check=True)
    moved, grown_kb, kept = out.stdout.split()
    assert int(moved) >= 32 << 20  # at least the weights' whole 2 MB pages
    assert int(grown_kb) >= (32 + 48) << 10  # the weights' pages and most of the pool's, in KB
    assert kept == "True"  # contents kept


@pytest.mark.parametrize("rows", [1, 5, 6, 7, 11, 13, 16])  # tiles of 1-6 rows with AVX2, one of 1-16 with AVX-512
def test_cpu_small_linear_matches_f_linear(rows):
    """The C++ matmul of decode steps gives F.linear's result for 1 to 16 rows, SmolLM2's shapes, and
    rows that are a strided view (a slice of a wider tensor)."""
    from zero2vllm.engine.kernels import cpu_kernels

    small = cpu_kernels.load_cpu_small_linear()
    assert small is not None
    gen = torch.Generator().manual_seed(rows)
    for k, n in [(576, 960), (1536, 576), (576, 3072), (40, 16)]:
        weight, wide = torch.randn(n, k, generator=gen), torch.randn(rows, 2 * k, generator=gen)
        x = wide[:, ::2]
        got = small(x, cpu_kernels.panels(weight), n)
        assert got.shape == (rows, n)
        torch.testing.assert_close(got, torch.nn.functional.linear(x, weight), rtol=1e-4, atol=1e-4)


def test_engine_uses_the_small_linear_only_for_few_rows(tiny_dir, monkeypatch):
    """Decode steps (one row per sequence) go through the C++ matmul, prompt steps of more than 16 rows
    through oneDNN; the tokens are those of the engine without the C++ kernels."""
    from zero2vllm.engine.kernels import cpu_kernels

    real, rows_seen = cpu_kernels.load_cpu_small_linear, []

    def counting():
        fn = real()
        return lambda x, w, n: rows_seen.append(x.shape[0]) or fn(x, w, n)

    monkeypatch.setattr(cpu_kernels, "load_cpu_small_linear", counting)
    params = SamplingParams(max_tokens=6, ignore_eos=True)
    got = engine_for(tiny_dir).generate([prompts()[4]], params)[0]["token_ids"]
    assert rows_seen and set(rows_seen) == {1}  # the 40-token prompt step did not use it
    rows_seen.clear()
    want = engine_for(tiny_dir, cpu_decode_kernel=False).generate([prompts()[4]], params)[0]["token_ids"]
    assert not rows_seen and got == want
