"""A Blueprint; the model kept in app.extensions; bad input raised with abort(400, ...) and
turned into JSON by one error handler; counters in a collections.Counter."""

import collections
import json
import math
import threading
import time

import psutil
import torch
from flask import Blueprint, Flask, abort, current_app, jsonify, request
from transformers import AutoModelForCausalLM, AutoTokenizer

api = Blueprint("api", __name__)
LIMIT = 256


def parse():
    try:
        body = json.loads(request.get_data(as_text=True))
    except (ValueError, UnicodeDecodeError):
        abort(400, "the body is not JSON")
    if not isinstance(body, dict):
        abort(400, "the body must be a JSON object")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        abort(400, "'prompt' must be a non-empty string")
    n = body.get("max_new_tokens", 50)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= LIMIT:
        abort(400, f"'max_new_tokens' must be an integer 1..{LIMIT}")
    temp = body.get("temperature", 0)
    if isinstance(temp, bool) or not isinstance(temp, (int, float)) or not (temp >= 0) or math.isinf(temp):
        abort(400, "'temperature' must be a finite number >= 0")
    return prompt, n, float(temp)


@api.post("/generate")
def generate():
    t0 = time.perf_counter()
    ext = current_app.extensions["llm"]
    prompt, n, temp = parse()
    enc = ext["tok"](prompt, return_tensors="pt")
    if enc.input_ids.shape[1] + n > ext["model"].config.max_position_embeddings:
        abort(400, "prompt + max_new_tokens is longer than the model's context")
    kwargs = dict(do_sample=True, temperature=temp) if temp else dict(do_sample=False)
    with ext["lock"], torch.no_grad():
        out = ext["model"].generate(**enc, max_new_tokens=n, pad_token_id=ext["tok"].eos_token_id, **kwargs)
    new = out[0, enc.input_ids.shape[1]:]
    dt = time.perf_counter() - t0
    with ext["lock"]:
        ext["stats"].update(requests=1, prompt_tokens=enc.input_ids.shape[1], completion_tokens=len(new))
        ext["latency"].append(dt)
    return jsonify(text=ext["tok"].decode(new, skip_special_tokens=True),
                   prompt_tokens=enc.input_ids.shape[1], completion_tokens=len(new), latency_ms=1000 * dt)


@api.get("/health")
def health():
    return jsonify(status="ok")


@api.get("/metrics")
def metrics():
    ext = current_app.extensions["llm"]
    s, lat = ext["stats"], list(ext["latency"])
    rows = [f"requests_total {s['requests']}", f"prompt_tokens_total {s['prompt_tokens']}",
            f"completion_tokens_total {s['completion_tokens']}",
            f"request_latency_seconds_sum {sum(lat)}", f"request_latency_seconds_count {len(lat)}",
            f"process_resident_memory_bytes {psutil.Process().memory_info().rss}"]
    return "\n".join(rows) + "\n", 200, {"Content-Type": "text/plain; version=0.0.4"}


def create_app(model_dir):
    app = Flask(__name__)
    app.extensions["llm"] = {
        "tok": AutoTokenizer.from_pretrained(model_dir),
        "model": AutoModelForCausalLM.from_pretrained(model_dir).eval(),
        "lock": threading.RLock(), "stats": collections.Counter(), "latency": [],
    }
    app.register_blueprint(api)

    @app.errorhandler(400)
    @app.errorhandler(404)
    @app.errorhandler(405)
    def as_json(e):
        return jsonify(error=e.description), e.code

    return app
