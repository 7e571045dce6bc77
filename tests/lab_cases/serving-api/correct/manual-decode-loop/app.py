"""A hand-written decode loop with Hugging Face's KV cache (past_key_values) instead of
model.generate; validation by a helper that returns the first problem; a condition variable."""

import math
import threading
import time

import psutil
import torch
from flask import Flask, Response, jsonify, request
from transformers import AutoModelForCausalLM, AutoTokenizer


def problem(body, tokenizer, context):
    if not isinstance(body, dict):
        return "the body must be a JSON object", None
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or prompt == "":
        return "prompt must be a non-empty string", None
    n = body.get("max_new_tokens", 50)
    if type(n) is not int or n < 1 or n > 256:
        return "max_new_tokens must be an integer in 1..256", None
    t = body.get("temperature", 0)
    if type(t) not in (int, float) or not math.isfinite(t) or t < 0:
        return "temperature must be a number >= 0", None
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    if ids.shape[1] + n > context:
        return f"prompt + max_new_tokens exceed the context of {context}", None
    return None, (ids, n, float(t))


def create_app(model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    eos = model.config.eos_token_id
    busy = threading.Condition()
    counters = {"requests": 0, "generated_tokens": 0, "prompt_tokens": 0, "seconds": 0.0}
    app = Flask("manual")

    @torch.inference_mode()
    def decode(ids, n, temperature):
        out, past, feed = [], None, ids
        for _ in range(n):
            res = model(input_ids=feed, past_key_values=past, use_cache=True)
            past, logits = res.past_key_values, res.logits[0, -1].float()
            if temperature == 0:
                nxt = int(logits.argmax())
            else:
                nxt = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1))
            out.append(nxt)
            if nxt == eos:
                break
            feed = torch.tensor([[nxt]])
        return out

    @app.route("/generate", methods=["POST"])
    def generate():
        t0 = time.time()
        try:
            import json
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            body = None
        err, parsed = problem(body, tokenizer, model.config.max_position_embeddings)
        if err:
            return jsonify(error=err), 400
        ids, n, temperature = parsed
        with busy:
            new = decode(ids, n, temperature)
        dt = time.time() - t0
        with busy:
            counters["requests"] += 1
            counters["generated_tokens"] += len(new)
            counters["prompt_tokens"] += ids.shape[1]
            counters["seconds"] += dt
        return jsonify(text=tokenizer.decode(new, skip_special_tokens=True), prompt_tokens=ids.shape[1],
                       completion_tokens=len(new), latency_ms=dt * 1000)

    @app.route("/health")
    def health():
        return jsonify(status="ok")

    @app.route("/metrics")
    def metrics():
        lines = [f"api_requests_total {counters['requests']}",
                 f"api_generated_tokens_total {counters['generated_tokens']}",
                 f"api_prompt_tokens_total {counters['prompt_tokens']}",
                 f"api_request_duration_seconds_sum {counters['seconds']}",
                 f"process_resident_memory_bytes {psutil.Process().memory_info().rss}"]
        return Response("\n".join(lines) + "\n", content_type="text/plain")

    @app.errorhandler(Exception)
    def anything(exc):
        code = getattr(exc, "code", None) or 400
        return jsonify(error=str(exc)), code if code < 500 else 400

    return app
