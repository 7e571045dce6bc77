"""A GenerationConfig built per request, the tokenizer's BatchEncoding passed whole, and
validation written as early returns with one message per field."""

import math
import threading
import time

import psutil
import torch
from flask import Flask, jsonify, make_response, request
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig


def create_app(model_dir: str):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.eval()
    gate = threading.Lock()
    seen = {"requests": 0, "errors": 0, "tokens_prompt": 0, "tokens_completion": 0, "time": 0.0}
    app = Flask(__name__)

    def error(msg):
        seen["errors"] += 1
        return make_response(jsonify(error=msg), 400)

    @app.route("/generate", methods=["POST"])
    def generate():
        clock = time.perf_counter()
        payload = request.get_json(force=True, silent=True)
        if not isinstance(payload, dict):
            return error("body: a JSON object is required")
        text = payload.get("prompt")
        if type(text) is not str:
            return error("prompt: must be a string")
        if not text:
            return error("prompt: must not be empty")
        n = payload.get("max_new_tokens", 50)
        if type(n) is not int:
            return error("max_new_tokens: must be an integer")
        if not 1 <= n <= 256:
            return error("max_new_tokens: must be between 1 and 256")
        temp = payload.get("temperature", 0)
        if type(temp) not in (int, float):
            return error("temperature: must be a number")
        if not math.isfinite(temp) or temp < 0:
            return error("temperature: must be a finite number >= 0")
        enc = tokenizer(text, return_tensors="pt")
        n_in = enc["input_ids"].size(1)
        if n_in + n > model.config.max_position_embeddings:
            return error("prompt: too long for max_new_tokens within the context")
        cfg = GenerationConfig(max_new_tokens=n, do_sample=temp > 0, temperature=float(temp) if temp > 0 else 1.0,
                               top_k=0 if temp > 0 else None, top_p=1.0,
                               eos_token_id=model.config.eos_token_id, pad_token_id=tokenizer.eos_token_id)
        with gate, torch.no_grad():
            ids = model.generate(**enc, generation_config=cfg)
        fresh = ids[0, n_in:]
        took = time.perf_counter() - clock
        with gate:
            seen["requests"] += 1
            seen["tokens_prompt"] += n_in
            seen["tokens_completion"] += fresh.numel()
            seen["time"] += took
        return jsonify(text=tokenizer.decode(fresh, skip_special_tokens=True), prompt_tokens=n_in,
                       completion_tokens=fresh.numel(), latency_ms=took * 1e3)

    @app.route("/health", methods=["GET"])
    def health():
        return jsonify(status="ok")

    @app.route("/metrics", methods=["GET"])
    def metrics():
        lines = [f'z_requests_total{{code="200"}} {seen["requests"]}',
                 f'z_requests_total{{code="400"}} {seen["errors"]}',
                 f'z_tokens_total{{side="prompt"}} {seen["tokens_prompt"]}',
                 f'z_tokens_total{{side="completion"}} {seen["tokens_completion"]}',
                 f'z_latency_seconds_total {seen["time"]}',
                 f'process_resident_memory_bytes {psutil.Process().memory_info().rss}']
        resp = make_response("\n".join(lines) + "\n")
        resp.mimetype = "text/plain"
        return resp

    return app
