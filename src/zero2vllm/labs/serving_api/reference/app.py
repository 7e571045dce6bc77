"""A naive LLM serving API: Flask + Hugging Face transformers, one request at a time.

The serving-api lab's reference solution. The interface the checks use:

    create_app(model_dir) -> flask.Flask     model_dir: a Hugging Face model folder
    POST /generate  {"prompt": str, "max_new_tokens": int = 50, "temperature": float = 0}
        200 {"text": the new text only, "prompt_tokens": int, "completion_tokens": int,
             "latency_ms": float}
        400 {"error": "what was wrong"} for anything malformed: never a 500, never a hang
    GET /health     200 {"status": "ok"}
    GET /metrics    Prometheus text: requests, latency, tokens, process memory

    python app.py [--model smollm2|DIR] [--port 8000]    # then: z2v bench http://127.0.0.1:8000

Why "naive": a global lock lets one request at a time into model.generate. A second client
waits for the first to finish, so throughput stays flat however many clients there are. Week 3
(continuous batching, vLLM) is the fix; `z2v bench --concurrency 1,4,16` shows the problem.
"""

from __future__ import annotations

import math
import os
import threading
import time

import psutil
import torch
from flask import Flask, Response, jsonify, request
from transformers import AutoModelForCausalLM, AutoTokenizer

MAX_NEW_TOKENS = 256  # the most a request may ask for
DEFAULT_NEW_TOKENS = 50


def create_app(model_dir: str) -> Flask:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    context = model.config.max_position_embeddings  # prompt + new tokens must fit in it
    lock = threading.Lock()  # transformers' generate is not meant to run twice at once
    stats = {"requests_ok": 0, "requests_bad": 0, "prompt_tokens": 0, "completion_tokens": 0,
             "latency_sum": 0.0, "latency_count": 0}
    stats_lock = threading.Lock()

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20  # bigger bodies get a 413, not our memory

    def bad(message: str):
        with stats_lock:
            stats["requests_bad"] += 1
        return jsonify({"error": message}), 400

    @app.post("/generate")
    def generate():
        started = time.perf_counter()
        body = request.get_json(force=True, silent=True)  # None if the body is not JSON
        if not isinstance(body, dict):
            return bad('send a JSON object like {"prompt": "Hello", "max_new_tokens": 20}')
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return bad("'prompt' must be a non-empty string")
        max_new = body.get("max_new_tokens", DEFAULT_NEW_TOKENS)
        if isinstance(max_new, bool) or not isinstance(max_new, int) or not 1 <= max_new <= MAX_NEW_TOKENS:
            return bad(f"'max_new_tokens' must be an integer from 1 to {MAX_NEW_TOKENS}")
        temperature = body.get("temperature", 0.0)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or not math.isfinite(temperature) or not 0 <= temperature <= 2:
            return bad("'temperature' must be a number from 0 (greedy) to 2")
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        if ids.shape[1] + max_new > context:
            return bad(f"the prompt ({ids.shape[1]} tokens) + max_new_tokens ({max_new}) is longer "
                       f"than the model's context of {context} tokens")
        sampling = dict(do_sample=True, temperature=float(temperature)) if temperature > 0 \
            else dict(do_sample=False)
        with lock:  # the naive part: everybody else waits here
            with torch.inference_mode():
                out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                                     pad_token_id=tokenizer.eos_token_id, **sampling)
        new_tokens = out[0, ids.shape[1]:]
        latency = time.perf_counter() - started
        with stats_lock:
            stats["requests_ok"] += 1
            stats["prompt_tokens"] += ids.shape[1]
            stats["completion_tokens"] += len(new_tokens)
            stats["latency_sum"] += latency
            stats["latency_count"] += 1
        return jsonify({
            "text": tokenizer.decode(new_tokens, skip_special_tokens=True),
            "prompt_tokens": int(ids.shape[1]),
            "completion_tokens": int(len(new_tokens)),
            "latency_ms": round(latency * 1e3, 2),
        })

    @app.get("/health")
    def health():
        return jsonify({"status": "ok"})

    @app.get("/metrics")
    def metrics():
        with stats_lock:
            s = dict(stats)
        rss = psutil.Process(os.getpid()).memory_info().rss
        lines = [
            "# TYPE generate_requests_total counter",
            f'generate_requests_total{{status="ok"}} {s["requests_ok"]}',
            f'generate_requests_total{{status="bad_request"}} {s["requests_bad"]}',
            "# TYPE generate_latency_seconds summary",
            f"generate_latency_seconds_sum {s['latency_sum']:.6f}",
            f"generate_latency_seconds_count {s['latency_count']}",
            "# TYPE prompt_tokens_total counter",
            f"prompt_tokens_total {s['prompt_tokens']}",
            "# TYPE completion_tokens_total counter",
            f"completion_tokens_total {s['completion_tokens']}",
            "# TYPE process_resident_memory_bytes gauge",
            f"process_resident_memory_bytes {rss}",
        ]
        return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")

    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(413)
    def http_error(exc):  # JSON errors everywhere, not Flask's HTML pages
        return jsonify({"error": str(exc)}), exc.code

    return app


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2", help="smollm2 or a Hugging Face model folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    from zero2vllm.models import ensure_model_dir

    app = create_app(str(ensure_model_dir(args.model)))
    app.run(host=args.host, port=args.port, threaded=True)
