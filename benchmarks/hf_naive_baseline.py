# Copied unchanged from the workplace's anchor script (shared/bench/hf_naive_baseline.py beside the repo), so it can be rerun on the device beside ours.
# Naive HF transformers generate baseline on a Llama-3.2-1B-shaped model with random weights.
import time, json, torch, sys
from transformers import LlamaConfig, LlamaForCausalLM
cfg = LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
    num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=131072,
    rope_theta=500000.0, tie_word_embeddings=True, rms_norm_eps=1e-5)
torch.manual_seed(0)
with torch.device("cuda"):
    model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
print("params", sum(p.numel() for p in model.parameters())/1e6, "M", flush=True)
res = {}
def gen(bs, plen, new):
    ids = torch.randint(0, cfg.vocab_size, (bs, plen), device="cuda")
    torch.cuda.synchronize(); t = time.perf_counter()
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0, eos_token_id=None)
    torch.cuda.synchronize(); dt = time.perf_counter() - t
    assert out.shape[1] == plen + new
    return dt
gen(1, 16, 8)  # warm-up
torch.cuda.reset_peak_memory_stats()
dt = gen(1, 128, 128); res["bs1_latency_s"] = dt; res["bs1_tok_s"] = 128/dt
print("bs1 128+128", dt, 128/dt, flush=True)
t = time.perf_counter()
for _ in range(8): gen(1, 128, 128)
dt = time.perf_counter() - t; res["seq8_tok_s"] = 8*128/dt
print("sequential 8 req", dt, 8*128/dt, flush=True)
for bs in (8, 32, 64):
    dt = gen(bs, 128, 128); res[f"static_bs{bs}_tok_s"] = bs*128/dt
    print(f"static batch {bs}", dt, bs*128/dt, flush=True)
res["peak_mem_GiB"] = torch.cuda.max_memory_allocated()/2**30
print(json.dumps(res))
