# Copied unchanged from the workplace's anchor script (shared/bench/hf_static_compile.py beside the repo): the
# stronger Hugging Face baseline (static KV cache, compiled decode), rerun on the device beside our engine.
"""Anchor: Hugging Face generate with a static KV cache and torch.compile (HF's documented fast
path for single-stream decode), Llama-3.2-1B shape, random bf16 weights, 128 prompt + 128 output.
Prints TPOT for batch 1 and output tok/s for static batches."""
import time, torch, json
from transformers import LlamaConfig, LlamaForCausalLM
cfg = LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                  num_attention_heads=32, num_key_value_heads=8, head_dim=64, rope_theta=500000.0,
                  tie_word_embeddings=True, rms_norm_eps=1e-5, max_position_embeddings=131072)
torch.manual_seed(0)
with torch.device("cuda"):
    model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
model.generation_config.cache_implementation = "static"
# transformers >= 4.5x compiles the decode forward itself when the cache is static (compile_config)
res = {}
for bs in (1, 64, 256):
    ids = torch.randint(0, 32000, (bs, 128), device="cuda")
    kw = dict(max_new_tokens=128, min_new_tokens=128, do_sample=False, pad_token_id=0)
    for _ in range(3):  # compile + warm-up
        model.generate(ids, **kw)
    torch.cuda.synchronize(); t = time.perf_counter()
    out = model.generate(ids, **kw); torch.cuda.synchronize(); dt = time.perf_counter() - t
    n = (out.shape[1] - 128) * bs
    # TTFT estimate: one prefill call
    t2 = time.perf_counter(); model.generate(ids, max_new_tokens=1, min_new_tokens=1, do_sample=False, pad_token_id=0)
    torch.cuda.synchronize(); ttft = time.perf_counter() - t2
    res[bs] = dict(e2e_s=dt, out_tok_s=n / dt, ttft_s=ttft, tpot_ms=(dt - ttft) / 127 * 1000)
    print(bs, json.dumps(res[bs]), flush=True)
print(json.dumps(res))
