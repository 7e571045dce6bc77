"""One worker thread owns the model; request handlers put jobs on a queue and wait for their
own result (each job carries its own Event), so no handler ever touches the model."""

import math
import os
import queue
import threading
import time

import psutil
import torch
from flask import Flask, jsonify, request
from transformers import AutoModelForCausalLM, AutoTokenizer


class Job:
    def __init__(self, ids, max_new, temperature):
        self.ids, self.max_new, self.temperature = ids, max_new, temperature
        self.done = threading.Event()
        self.result = None


def create_app(model_dir: str) -> Flask:
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    jobs: "queue.Queue[Job]" = queue.Queue()
    m = {"ok": 0, "bad": 0, "in": 0, "out": 0, "lat": 0.0}
    mlock = threading.Lock()

    def worker():
        while True:
            job = jobs.get()
            kw = {"do_sample": False}
            if job.temperature > 0:
                kw = {"do_sample": True, "temperature": job.temperature, "top_k": 0, "top_p": 1.0}
            with torch.no_grad():
                out = model.generate(job.ids, attention_mask=torch.ones_like(job.ids),
                                     max_new_tokens=job.max_new, pad_token_id=tok.eos_token_id, **kw)
            job.result = out[0, job.ids.shape[1]:]
            job.done.set()

    threading.Thread(target=worker, daemon=True).start()
    app = Flask(__name__)

    def reject(msg):
        with mlock:
            m["bad"] += 1
        return jsonify({"error": msg}), 400

    @app.post("/generate")
    def generate():
        start = time.perf_counter()
        if not request.data:
            return reject("empty body")
        body = request.get_json(silent=True, force=True)
        if type(body) is not dict:
            return reject("expected a JSON object")
        prompt, max_new = body.get("prompt"), body.get("max_new_tokens", 50)
        temperature = body.get("temperature", 0)
        if not isinstance(prompt, str) or not prompt:
            return reject("prompt: a non-empty string")
        if isinstance(max_new, bool) or not isinstance(max_new, int) or not (0 < max_new <= 256):
            return reject("max_new_tokens: an integer 1..256")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or math.isnan(temperature) or temperature < 0 or math.isinf(temperature):
            return reject("temperature: a finite number >= 0")
        ids = tok(prompt, return_tensors="pt").input_ids
        if ids.shape[1] + max_new > model.config.max_position_embeddings:
            return reject("too long for the model's context")
        job = Job(ids, max_new, float(temperature))
        jobs.put(job)
        job.done.wait()
        took = time.perf_counter() - start
        with mlock:
            m["ok"] += 1
            m["in"] += ids.shape[1]
            m["out"] += len(job.result)
            m["lat"] += took
        return jsonify({"text": tok.decode(job.result, skip_special_tokens=True),
                        "prompt_tokens": ids.shape[1], "completion_tokens": len(job.result),
                        "latency_ms": took * 1e3})

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.get("/metrics")
    def metrics():
        with mlock:
            s = dict(m)
        body = (f'requests_total{{outcome="ok"}} {s["ok"]}\n'
                f'requests_total{{outcome="bad"}} {s["bad"]}\n'
                f'tokens_total{{kind="prompt"}} {s["in"]}\n'
                f'tokens_total{{kind="completion"}} {s["out"]}\n'
                f'request_latency_seconds_sum {s["lat"]}\n'
                f'process_resident_memory_bytes {psutil.Process(os.getpid()).memory_info().rss}\n')
        return body, 200, {"Content-Type": "text/plain; version=0.0.4"}

    return app
