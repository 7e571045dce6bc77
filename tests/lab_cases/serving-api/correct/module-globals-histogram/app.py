"""Module-level globals filled by create_app, an RLock, and latency as a Prometheus histogram."""

import bisect
import math
import threading
import time

import psutil
import torch
from flask import Flask, Response, jsonify, request
from transformers import AutoModelForCausalLM, AutoTokenizer

MODEL = TOKENIZER = None
LOCK = threading.RLock()
BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 5, 30, math.inf]
HIST = [0] * len(BUCKETS)
TOTALS = {"sum": 0.0, "count": 0, "prompt": 0, "completion": 0}


def _fail(msg):
    return jsonify({"error": msg}), 400


def _number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def handle():
    start = time.perf_counter()
    data = request.get_json(silent=True, force=True)
    if not isinstance(data, dict):
        return _fail("expected a JSON object body")
    if "prompt" not in data:
        return _fail("missing 'prompt'")
    prompt = data["prompt"]
    if not isinstance(prompt, str) or len(prompt) == 0:
        return _fail("'prompt' must be a non-empty string")
    max_new = data.get("max_new_tokens", 50)
    if not _number(max_new) or not isinstance(max_new, int) or max_new < 1 or max_new > 256:
        return _fail("'max_new_tokens' must be an integer between 1 and 256")
    temperature = data.get("temperature", 0)
    if not _number(temperature) or math.isnan(temperature) or temperature < 0:
        return _fail("'temperature' must be a number >= 0")
    input_ids = TOKENIZER(prompt, return_tensors="pt")["input_ids"]
    n_prompt = int(input_ids.shape[-1])
    if n_prompt + max_new > MODEL.config.max_position_embeddings:
        return _fail("prompt too long for the model's context")
    options = {"max_new_tokens": max_new, "pad_token_id": TOKENIZER.eos_token_id}
    if temperature == 0:
        options["do_sample"] = False
    else:
        options.update(do_sample=True, temperature=float(temperature))
    with LOCK:
        with torch.inference_mode():
            generated = MODEL.generate(input_ids, attention_mask=torch.ones_like(input_ids), **options)
    completion = generated[0][n_prompt:]
    elapsed = time.perf_counter() - start
    with LOCK:
        HIST[bisect.bisect_left(BUCKETS, elapsed)] += 1
        TOTALS["sum"] += elapsed
        TOTALS["count"] += 1
        TOTALS["prompt"] += n_prompt
        TOTALS["completion"] += len(completion)
    return jsonify({"text": TOKENIZER.decode(completion, skip_special_tokens=True),
                    "prompt_tokens": n_prompt, "completion_tokens": int(completion.numel()),
                    "latency_ms": elapsed * 1000.0})


def prometheus():
    out = ["# TYPE generate_duration_seconds histogram"]
    running = 0
    for le, n in zip(BUCKETS, HIST):
        running += n
        out.append(f'generate_duration_seconds_bucket{{le="{"+Inf" if le == math.inf else le}"}} {running}')
    out += [f"generate_duration_seconds_sum {TOTALS['sum']}",
            f"generate_duration_seconds_count {TOTALS['count']}",
            "# TYPE generate_requests counter", f"generate_requests {TOTALS['count']}",
            f"tokens_in_total {TOTALS['prompt']}", f"tokens_out_total {TOTALS['completion']}",
            f"process_resident_memory_bytes {psutil.Process().memory_info().rss}"]
    return Response("\n".join(out) + "\n", mimetype="text/plain")


def create_app(model_dir):
    global MODEL, TOKENIZER
    TOKENIZER = AutoTokenizer.from_pretrained(model_dir)
    MODEL = AutoModelForCausalLM.from_pretrained(model_dir)
    MODEL.eval()
    app = Flask(__name__)
    app.add_url_rule("/generate", "generate", handle, methods=["POST"])
    app.add_url_rule("/health", "health", lambda: {"status": "ok"})
    app.add_url_rule("/metrics", "metrics", prometheus)
    return app
