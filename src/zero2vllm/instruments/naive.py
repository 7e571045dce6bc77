"""The naive serving API: Flask + `transformers.generate`, one request at a time.

This is week 2's baseline on purpose. Every request takes a global lock and runs its own
`model.generate`; while it runs, every other request waits in line. So the server's output
throughput is the single-request speed no matter how many clients there are, which is exactly
what `z2v bench --concurrency 1,4,16` shows and what continuous batching (week 3, vLLM) fixes.

Endpoints
  POST /generate  {"prompt": str, "max_new_tokens": int = 64, "temperature": float = 0,
                   "top_p": float = 1, "top_k": int = 0, "seed": int, "ignore_eos": bool,
                   "chat": bool}
                  or "prompt_token_ids": [int, ...] instead of "prompt" (exact input lengths
                  for benchmarks, and models without a tokenizer).
                  -> 200 {"text", "token_ids"?, "model", "prompt_tokens", "completion_tokens",
                          "finish_reason", "timings": {"queue_ms", "generate_ms", "total_ms",
                          "tokens_per_s"}}
                  -> 4xx {"error": "..."} for any bad request (never a crash, never a hang)
  GET  /health    {"status": "ok", "model", "device", "max_model_len", "max_new_tokens_limit"}
  GET  /metrics   Prometheus text: requests, latency histograms, tokens, process memory.

Hardened like the engine's server: bodies must be application/json (a web page cannot send
that without asking), the Host must be a loopback name when bound to loopback, `api_key`
requires `Authorization: Bearer`, idle and half-sent connections time out, connection threads
are bounded, and a client that hangs up stops its generation.
"""

from __future__ import annotations

import hmac
import json
import math
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from zero2vllm.instruments.metrics import Metrics
from zero2vllm.instruments.wsgi_server import ServerThread, make_http_server  # noqa: F401 - callers import them here

MAX_BODY_BYTES = 1 << 20  # a 1 MiB JSON body is far more than any prompt we accept
LOOPBACK = ("localhost", "127.0.0.1", "[::1]", "::1")


class BadRequest(Exception):
    """Becomes a 400 with {"error": message}."""


@dataclass
class GenerateParams:
    prompt_ids: list[int]
    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int | None
    ignore_eos: bool
    return_ids: bool


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class NaiveServer:
    """A model, its tokenizer and one lock: the whole serving 'engine' of week 2."""

    def __init__(self, model, tokenizer, *, name: str, max_model_len: int | None = None,
                 max_new_tokens_limit: int = 1024, default_max_new_tokens: int = 64):
        import torch

        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.device = next(model.parameters()).device
        cfg = model.config
        ctx = getattr(cfg, "max_position_embeddings", None) or 2048
        self.max_model_len = min(max_model_len or ctx, ctx)
        self.max_new_tokens_limit = min(max_new_tokens_limit, self.max_model_len - 1)
        self.default_max_new_tokens = min(default_max_new_tokens, self.max_new_tokens_limit)
        self.vocab_size = cfg.vocab_size
        self.eos_token_id = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if self.eos_token_id is None:
            self.eos_token_id = getattr(cfg, "eos_token_id", None)
        pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
        if pad is None:
            eos = self.eos_token_id
            pad = (eos[0] if isinstance(eos, (list, tuple)) else eos) if eos is not None else 0
        self.pad_token_id = pad
        self.lock = threading.Lock()
        self.metrics = Metrics()
        self.torch = torch

    # -- request validation -----------------------------------------------------------------
    def parse(self, body: Any) -> GenerateParams:
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object like {\"prompt\": \"Hello\"}")
        has_text, has_ids = "prompt" in body, "prompt_token_ids" in body
        if has_text and has_ids:
            raise BadRequest("give either prompt or prompt_token_ids, not both")
        if not has_text and not has_ids:
            raise BadRequest("missing 'prompt' (a non-empty string)")
        if has_text:
            prompt = body["prompt"]
            if not isinstance(prompt, str):
                raise BadRequest(f"'prompt' must be a string, got {type(prompt).__name__}")
            if not prompt.strip():
                raise BadRequest("'prompt' is empty")
            try:
                prompt.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest("'prompt' is not valid Unicode (it holds a lone surrogate)") from None
            if self.tokenizer is None:
                raise BadRequest("this model has no tokenizer: send prompt_token_ids instead of prompt")
            if len(prompt) > 16 * self.max_model_len:  # cheap guard before tokenizing a huge string
                raise BadRequest(f"the prompt is longer than the model's context of {self.max_model_len} tokens")
            if body.get("chat", False) is True and getattr(self.tokenizer, "chat_template", None):
                ids = self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
                )
                if hasattr(ids, "get"):  # some tokenizers return a BatchEncoding
                    ids = ids["input_ids"]
                ids = list(ids)
            else:
                ids = self.tokenizer(prompt)["input_ids"]
        else:
            ids = body["prompt_token_ids"]
            if not isinstance(ids, list) or not ids or not all(_is_int(t) for t in ids):
                raise BadRequest("'prompt_token_ids' must be a non-empty list of integers")
            if any(t < 0 or t >= self.vocab_size for t in ids):
                raise BadRequest(f"'prompt_token_ids' must be in [0, {self.vocab_size})")
        if "chat" in body and not isinstance(body["chat"], bool):
            raise BadRequest("'chat' must be true or false")

        max_new = body.get("max_new_tokens", self.default_max_new_tokens)
        if not _is_int(max_new):
            raise BadRequest(f"'max_new_tokens' must be an integer, got {type(max_new).__name__}")
        if max_new < 1:
            raise BadRequest("'max_new_tokens' must be at least 1")
        if max_new > self.max_new_tokens_limit:
            raise BadRequest(f"'max_new_tokens' is {max_new}, over this server's limit of {self.max_new_tokens_limit}")
        if len(ids) >= self.max_model_len:
            raise BadRequest(
                f"the prompt is {len(ids)} tokens, longer than the model's context of {self.max_model_len}"
            )
        if len(ids) + max_new > self.max_model_len:
            raise BadRequest(
                f"prompt ({len(ids)} tokens) + max_new_tokens ({max_new}) is over the model's "
                f"context of {self.max_model_len} tokens; lower max_new_tokens"
            )

        temperature = body.get("temperature", 0.0)
        if not _is_number(temperature) or not 0 <= temperature <= 10:
            raise BadRequest("'temperature' must be a number from 0 (greedy) to 10")
        if 0 < temperature < 1e-2:  # as vLLM: a tinier T overflows softmax(logits / T)
            temperature = 1e-2
        top_p = body.get("top_p", 1.0)
        if not _is_number(top_p) or not 0 < top_p <= 1:
            raise BadRequest("'top_p' must be a number in (0, 1]")
        top_k = body.get("top_k", 0)
        if not _is_int(top_k) or top_k < 0:
            raise BadRequest("'top_k' must be a non-negative integer (0: off)")
        seed = body.get("seed")
        if seed is not None and (not _is_int(seed) or not 0 <= seed < 2**63):
            raise BadRequest("'seed' must be a non-negative integer")
        ignore_eos = body.get("ignore_eos", False)
        if not isinstance(ignore_eos, bool):
            raise BadRequest("'ignore_eos' must be true or false")
        return GenerateParams(list(ids), max_new, float(temperature), float(top_p), top_k, seed,
                              ignore_eos, return_ids=has_ids or self.tokenizer is None)

    # -- generation ---------------------------------------------------------------------------
    def generate(self, p: GenerateParams, arrived: float, client=None) -> dict:
        """Generate for P; stops early (finish_reason "abort") once socket CLIENT has hung up."""
        torch = self.torch
        ids = torch.tensor([p.prompt_ids], device=self.device)
        kwargs: dict[str, Any] = dict(
            attention_mask=torch.ones_like(ids), max_new_tokens=p.max_new_tokens,
            pad_token_id=self.pad_token_id,
        )
        if p.temperature > 0:
            kwargs.update(do_sample=True, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k or None)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if p.ignore_eos:
            kwargs["min_new_tokens"] = p.max_new_tokens
        if client is not None:
            from transformers import StoppingCriteriaList

            kwargs["stopping_criteria"] = StoppingCriteriaList([_ClientGone(client, torch)])
        with self.lock:  # the naive part: one request at a time
            started = time.perf_counter()
            self.metrics.add("requests_running", 1)
            try:
                if p.seed is not None:
                    torch.manual_seed(p.seed)
                if client is not None and client_gone(client):  # left while waiting for the lock
                    out = ids
                else:
                    with torch.inference_mode():
                        out = self.model.generate(ids, **kwargs)
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
            finally:
                self.metrics.add("requests_running", -1)
            finished = time.perf_counter()
        new = out[0, len(p.prompt_ids):].tolist()
        eos = self.eos_token_id
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) if eos is not None else set()
        stopped = bool(new) and new[-1] in eos_ids and len(new) < p.max_new_tokens
        gone = client is not None and len(new) < p.max_new_tokens and not stopped and client_gone(client)
        gen_s = finished - started
        result = {
            "model": self.name,
            "prompt_tokens": len(p.prompt_ids),
            "completion_tokens": len(new),
            "finish_reason": "abort" if gone else "stop" if stopped else "length",
            "timings": {
                "queue_ms": round((started - arrived) * 1e3, 3),
                "generate_ms": round(gen_s * 1e3, 3),
                "total_ms": round((finished - arrived) * 1e3, 3),
                "tokens_per_s": round(len(new) / gen_s, 3) if gen_s > 0 else None,
            },
        }
        if self.tokenizer is not None:
            result["text"] = self.tokenizer.decode(new, skip_special_tokens=True)
        if p.return_ids:
            result["token_ids"] = new
        m = self.metrics
        m.inc("prompt_tokens_total", len(p.prompt_ids), "Prompt tokens processed.")
        m.inc("generation_tokens_total", len(new), "Tokens generated.")
        m.observe("queue_seconds", started - arrived, "Time a request waited for the model lock.")
        m.observe("generate_seconds", gen_s, "Time inside model.generate.")
        return result


def client_gone(sock) -> bool:
    """Has the client closed its end? (Readable with nothing to read means EOF.)"""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class _ClientGone:
    """A transformers stopping criterion: stop generating for a client that has gone."""

    def __init__(self, sock, torch):
        self.sock, self.torch = sock, torch

    def __call__(self, input_ids, scores, **kwargs):
        return self.torch.full((input_ids.shape[0],), client_gone(self.sock), dtype=self.torch.bool,
                               device=input_ids.device)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def create_app(server: NaiveServer, api_key: str | None = None):
    """The Flask app around a NaiveServer. Every error is JSON; nothing a client sends crashes it."""
    from flask import Flask, Response, jsonify, request
    from werkzeug.exceptions import HTTPException

    app = Flask("zero2vllm-naive")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    m = server.metrics
    m.set("requests_in_flight", 0, "Requests inside /generate (waiting or running).")
    m.set("requests_running", 0, "Requests inside model.generate (0 or 1: the lock).")

    def error(code: int, message: str):
        resp = jsonify({"error": message})
        resp.status_code = code
        return resp

    @app.before_request
    def refuse_cross_site():  # a web page the learner opens must not be able to drive the model
        name = request.host.lower()
        name = name[:name.find("]") + 1] if name.startswith("[") else name.rsplit(":", 1)[0]
        if request.environ.get("SERVER_NAME", "") in LOOPBACK + ("127.0.0.1",) and name not in LOOPBACK:
            return error(400, "the Host header must name this machine (localhost or 127.0.0.1)")
        auth = request.headers.get("Authorization", "").encode("latin-1", "replace")
        if api_key and request.path == "/generate" and not hmac.compare_digest(auth, f"Bearer {api_key}".encode()):
            return error(401, "a valid API key is required: Authorization: Bearer KEY")
        if request.method == "POST" and (request.content_length or 0) > MAX_BODY_BYTES:
            return error(413, f"the body is over {MAX_BODY_BYTES} bytes")
        if request.method == "POST" and request.mimetype != "application/json":
            return error(415, "send the body as Content-Type: application/json")

    def read_json():
        try:
            raw = request.get_data(cache=False)
        except OSError:  # the body did not arrive in time
            return None, "the body did not arrive in full"
        try:
            return json.loads(raw, parse_constant=_no_constant), None
        except RecursionError:
            return None, "the JSON body is nested too deeply"
        except ValueError:
            return None, "the body is not valid JSON; send {\"prompt\": \"...\"}"

    @app.post("/generate")
    def generate():
        arrived = time.perf_counter()
        m.add("requests_in_flight", 1)
        code = 500
        try:
            body, problem = read_json()
            if problem:
                code = 400
                return error(400, problem)
            try:
                params = server.parse(body)
            except BadRequest as exc:
                code = 400
                return error(400, str(exc))
            try:
                result = server.generate(params, arrived, request.environ.get("werkzeug.socket"))
            except Exception as exc:  # an OOM or a model error is the server's fault: 500, keep serving
                code = 500
                return error(500, f"generation failed: {type(exc).__name__}: {exc}")
            code = 200
            return jsonify(result)
        finally:
            m.add("requests_in_flight", -1)
            m.count_request("/generate", code)
            m.observe("request_latency_seconds", time.perf_counter() - arrived,
                      "Time from request arrival to response, /generate.")

    @app.get("/health")
    def health():
        m.count_request("/health", 200)
        return jsonify({
            "status": "ok", "model": server.name, "device": str(server.device),
            "max_model_len": server.max_model_len,
            "max_new_tokens_limit": server.max_new_tokens_limit,
        })

    @app.get("/metrics")
    def metrics():
        m.count_request("/metrics", 200)
        return Response(m.render(), mimetype="text/plain; version=0.0.4")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):  # 404, 405, 413... as JSON, not HTML
        m.count_request(request.path if request.path in ("/generate", "/health", "/metrics") else "other",
                        exc.code or 500)
        return error(exc.code or 500, f"{exc.name}: {exc.description}")

    return app


def pick_threads(requested: int | None, device: str):
    """torch's CPU threads for the server: REQUESTED, else measured for this machine
    (`zero2vllm.instruments.cputhreads`); one request runs at a time, so extra threads only contend."""
    from zero2vllm.instruments.cputhreads import choose_threads

    return choose_threads(requested, device=device)


def load_server(model_spec: str = "smollm2", *, device: str = "cpu", dtype: str | None = None,
                max_model_len: int | None = None, max_new_tokens_limit: int = 1024) -> NaiveServer:
    from zero2vllm.models import load_model

    model, tokenizer, folder = load_model(model_spec, device=device, dtype=dtype)
    name = "smollm2" if model_spec == "smollm2" else folder.name
    return NaiveServer(model, tokenizer, name=name, max_model_len=max_model_len,
                       max_new_tokens_limit=max_new_tokens_limit)

