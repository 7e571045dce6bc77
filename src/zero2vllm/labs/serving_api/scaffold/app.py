"""Week 2 project: your naive LLM serving API. Fill in every TODO, then run

    z2v check serving-api .                    # starts your app, drives it, checks the contract
    python app.py --port 8000                  # serve SmolLM2 (the embedded model)
    z2v bench http://127.0.0.1:8000 --concurrency 1,4,16 --lab serving-api   # measure it

The interface the checks use (keep these names):

    create_app(model_dir) -> flask.Flask     model_dir: a Hugging Face model folder
    POST /generate  {"prompt": str, "max_new_tokens": int = 50, "temperature": float = 0}
        200 {"text": the NEW text only (not the prompt), "prompt_tokens": int,
             "completion_tokens": int, "latency_ms": float}
        temperature 0 means greedy decoding (do_sample=False)
        400 {"error": "what was wrong"} for anything malformed (see README.md): never a 500,
            never a hang
    GET /health     200 {"status": "ok"}
    GET /metrics    Prometheus text format: a request counter, a latency metric, token
                    counters and process_resident_memory_bytes (psutil)
"""

import threading
import time

import torch
from flask import Flask, Response, jsonify, request
from transformers import AutoModelForCausalLM, AutoTokenizer

MAX_NEW_TOKENS = 256  # the most a request may ask for
DEFAULT_NEW_TOKENS = 50


def create_app(model_dir: str) -> Flask:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    context = model.config.max_position_embeddings  # prompt + new tokens must fit in it
    lock = threading.Lock()  # one request at a time inside model.generate

    app = Flask(__name__)

    @app.post("/generate")
    def generate():
        started = time.perf_counter()
        body = request.get_json(force=True, silent=True)  # None when the body is not JSON
        # TODO: validate: body a dict; prompt a non-empty string; max_new_tokens an int in
        # 1..MAX_NEW_TOKENS (careful: True is an int in Python); temperature a number >= 0;
        # prompt tokens + max_new_tokens <= context. Anything wrong: 400 {"error": "..."}.
        # TODO: tokenize, then under `lock` call model.generate (greedy when temperature is 0),
        # decode only the new tokens, and return the JSON of the interface above.
        return jsonify({"error": "not implemented yet"}), 501

    @app.get("/health")
    def health():
        return jsonify({"status": "ok"})

    # TODO: GET /metrics in Prometheus text format (count requests, latency and tokens in
    # /generate; read the process's memory with psutil.Process().memory_info().rss).

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
