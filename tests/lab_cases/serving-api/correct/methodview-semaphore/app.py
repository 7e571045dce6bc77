"""Class-based views (Flask's MethodView), a semaphore that lets two requests generate at once,
and a validation table of (field, check, message)."""

import math
import resource
import threading
import time

import psutil
import torch
from flask import Flask, jsonify, request
from flask.views import MethodView
from transformers import AutoModelForCausalLM, AutoTokenizer

RULES = [
    ("prompt", lambda v: isinstance(v, str) and len(v) > 0, "prompt must be a non-empty string"),
    ("max_new_tokens", lambda v: type(v) is int and 1 <= v <= 256, "max_new_tokens must be an int 1-256"),
    ("temperature", lambda v: type(v) in (int, float) and v == v and v >= 0,
     "temperature must be a number >= 0"),
]
DEFAULTS = {"max_new_tokens": 50, "temperature": 0.0}


class Generate(MethodView):
    def __init__(self, service):
        self.s = service

    def post(self):
        began = time.monotonic()
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            return jsonify(error="send a JSON object"), 400
        args = {**DEFAULTS, **{k: body[k] for k, _, _ in RULES if k in body}}
        for key, ok, message in RULES:
            if key not in args or not ok(args[key]):
                return jsonify(error=message), 400
        ids = self.s.tok(args["prompt"], return_tensors="pt").input_ids
        if ids.shape[1] + args["max_new_tokens"] > self.s.model.config.max_position_embeddings:
            return jsonify(error="the prompt and max_new_tokens do not fit the context"), 400
        sample = {"do_sample": False} if args["temperature"] == 0 else \
            {"do_sample": True, "temperature": float(args["temperature"])}
        with self.s.slots, torch.inference_mode():
            out = self.s.model.generate(ids, attention_mask=torch.ones_like(ids),
                                        max_new_tokens=args["max_new_tokens"],
                                        pad_token_id=self.s.tok.eos_token_id, **sample)
        new = out[0][ids.shape[1]:].tolist()
        ms = (time.monotonic() - began) * 1000
        self.s.count(len(ids[0]), len(new), ms)
        return jsonify(text=self.s.tok.decode(new, skip_special_tokens=True),
                       prompt_tokens=len(ids[0]), completion_tokens=len(new), latency_ms=ms)


class Service:
    def __init__(self, model_dir):
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.slots = threading.BoundedSemaphore(2)
        self.lock = threading.Lock()
        self.n = self.prompt = self.completion = 0
        self.ms = 0.0

    def count(self, p, c, ms):
        with self.lock:
            self.n, self.prompt, self.completion, self.ms = self.n + 1, self.prompt + p, self.completion + c, self.ms + ms


def create_app(model_dir):
    service = Service(model_dir)
    app = Flask(__name__)
    app.add_url_rule("/generate", view_func=Generate.as_view("generate", service))
    app.add_url_rule("/health", view_func=lambda: jsonify(status="ok"))

    def metrics():
        rss = psutil.Process().memory_info().rss
        text = "\n".join([
            "# HELP llm_requests_served Requests answered.",
            "# TYPE llm_requests_served counter",
            f"llm_requests_served {service.n}",
            f"llm_prompt_tokens {service.prompt}",
            f"llm_completion_tokens {service.completion}",
            f"llm_latency_ms_total {service.ms}",
            f"process_resident_memory_bytes {rss}",
            f"process_max_rss_kib {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}",
        ])
        return text + "\n", 200, {"Content-Type": "text/plain"}

    app.add_url_rule("/metrics", view_func=metrics)
    for code in (404, 405, 413):
        app.register_error_handler(code, lambda e: (jsonify(error=e.description), e.code))
    return app
