"""The engine behind an OpenAI-compatible API (vLLM's `api_server.py`), on http_server.py's framing.

Two threads. The engine thread loops `engine.step()` and, after each step, hands every new token
to the asyncio thread in one `call_soon_threadsafe`. The asyncio thread answers HTTP, streams
server-sent events and detokenizes; parsing a body and tokenizing its prompt run in a small
thread pool, so one huge prompt stalls neither the other streams nor /health.

Endpoints: POST /v1/completions (stream or not, `usage`, stream_options.include_usage,
max_tokens, min_tokens, ignore_eos, temperature, stop_token_ids; prompt as a string or token
ids), GET /v1/models, GET /health, GET /metrics (Prometheus; the engine gauges use vLLM's names
so `z2v compare` and vLLM's dashboards read them unchanged).

Every bad request is a 4xx in vLLM's shape, `{"error": {"message", "type", "param", "code"}}`.
Like vLLM's server it refuses cross-site drives: POST bodies must be application/json, the Host
must be a loopback name when bound to loopback, and `--api-key` requires `Authorization: Bearer`.

Started by `z2v serve engine --model smollm2 --port 8000` (its flags: commands/serve_engine.py).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from .engine_thread import EngineThread
from zero2vllm.instruments.http_server import ClientGone, Exchange, HTTPServer, Limits, Request
from .llm_engine import LLMEngine
from .openai_protocol import BadRequest, Detokenizer, error_body, parse_completion_request

LOOPBACK = ("localhost", "127.0.0.1", "[::1]", "::1")


def host_name(host: str) -> str:
    host = host.strip().lower()
    return host[:host.find("]") + 1] if host.startswith("[") else host.rsplit(":", 1)[0]


class Server:
    def __init__(self, engine: LLMEngine, model_name: str, api_key: str | None = None,
                 limits: Limits | None = None):
        self.engine, self.model_name, self.api_key = engine, model_name, api_key
        self.http = HTTPServer(self.app, error_body, limits)
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="tokenize")
        self.thread: EngineThread | None = None
        self.http_requests: dict[tuple[str, int], int] = {}
        self.prompt_tokens = 0
        self.port, self.loopback = 0, True

    async def app(self, req: Request, ex: Exchange) -> None:
        routes = {("GET", "/health"): self.health, ("GET", "/v1/models"): self.models,
                  ("GET", "/metrics"): self.metrics, ("POST", "/v1/completions"): self.completions}
        handler = routes.get((req.method, req.path))
        try:
            self.refuse_cross_site(req)
            if handler is None:
                known = any(p == req.path for _, p in routes)
                raise BadRequest(f"{req.method} {req.path} is not an endpoint here", 405 if known else 404)
            status = await handler(req, ex)
        except BadRequest as exc:
            status = exc.status
            await ex.send(status, error_body(status, str(exc), exc.param))
        except (ClientGone, ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug must cost one request, not the connection loop
            status = 500
            if not ex.started:
                await ex.send(500, error_body(500, f"internal error: {exc!r}"))
        key = (req.path if handler else "other", status)
        self.http_requests[key] = self.http_requests.get(key, 0) + 1

    def refuse_cross_site(self, req: Request) -> None:
        if self.loopback and host_name(req.headers.get("host", "")) not in LOOPBACK:
            raise BadRequest("the Host header must name this machine (localhost or 127.0.0.1)")
        auth = req.headers.get("authorization", "").encode("latin-1")
        if self.api_key and req.path.startswith("/v1/") and \
                not hmac.compare_digest(auth, f"Bearer {self.api_key}".encode()):
            raise BadRequest("a valid API key is required: Authorization: Bearer KEY", 401)
        media = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if req.method == "POST" and media != "application/json":
            raise BadRequest("send the body as Content-Type: application/json", 415)

    async def send_json(self, ex: Exchange, status: int, obj) -> int:
        await ex.send(status, json.dumps(obj).encode())
        return status

    # -- endpoints -------------------------------------------------------------------------------

    async def health(self, req, ex) -> int:
        alive = self.thread is not None and self.thread.is_alive()
        return await self.send_json(ex, 200 if alive else 503, {"status": "ok" if alive else "engine stopped"})

    async def models(self, req, ex) -> int:
        card = {"id": self.model_name, "object": "model", "created": int(time.time()), "owned_by": "zero2vllm",
                "max_model_len": self.engine.config.max_model_len}
        return await self.send_json(ex, 200, {"object": "list", "data": [card]})

    def prepare(self, body: bytes):
        """Parse, check and tokenize (in the pool): -> (Sequence, stream, include_usage)."""
        prompt, params, stream, include_usage = parse_completion_request(body, self.model_name)
        try:
            seq = self.engine.make_sequence(prompt, params, request_id=f"cmpl-{uuid.uuid4().hex}")
        except ValueError as exc:  # BadParam names the field
            raise BadRequest(str(exc), param=getattr(exc, "param", None)) from None
        return seq, stream, include_usage

    async def completions(self, req: Request, ex: Exchange) -> int:
        seq, stream, include_usage = await asyncio.get_running_loop().run_in_executor(self.pool, self.prepare,
                                                                                      req.body)
        self.prompt_tokens += seq.num_prompt_tokens
        tokens = self.thread.submit(seq)
        detok = Detokenizer(self.engine.tokenizer, seq.token_ids) if stream else None
        head = {"id": seq.request_id, "object": "text_completion", "created": int(time.time()),
                "model": self.model_name}
        try:
            if stream:
                await ex.start_stream(200, "text/event-stream")
            finish = error = None
            while finish is None:
                token, finish = await tokens.get()
                if token is None:  # the step failed for this sequence
                    error, finish = finish, "error"
                elif stream:
                    choice = {"index": 0, "text": detok.add(token), "logprobs": None, "finish_reason": finish}
                    await _send_event(ex, {**head, "choices": [choice]} | ({"usage": None} if include_usage else {}))
            usage = {"prompt_tokens": seq.num_prompt_tokens, "completion_tokens": seq.num_completion_tokens,
                     "total_tokens": len(seq)}
            if error and not stream:
                await ex.send(500, error_body(500, f"generation failed: {error}"))
                return 500
            if not stream:
                tok = self.engine.tokenizer
                text = tok.decode(seq.completion_token_ids, skip_special_tokens=True) if tok else ""
                choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
                return await self.send_json(ex, 200, {**head, "choices": [choice], "usage": usage})
            if error:  # as vLLM: an error event, then the normal end
                await _send_event(ex, json.loads(error_body(500, f"generation failed: {error}")))
            elif include_usage:
                await _send_event(ex, {**head, "choices": [], "usage": usage})
            await _send_event(ex, "[DONE]")
            await ex.end_stream()
            return 500 if error else 200
        except BaseException:
            self.thread.abort(seq)  # the client went away (or we failed it): free its blocks
            raise

    async def metrics(self, req, ex) -> int:
        await ex.send(200, self.render_metrics().encode(), "text/plain; version=0.0.4")
        return 200

    def render_metrics(self) -> str:
        from zero2vllm.instruments.metrics import process_memory_lines

        m = self.engine.metrics()
        stats, kv = m["stats"], m["stats"].kv_summary()
        used = m["num_blocks"] - m["free_blocks"]
        label = f'{{model_name="{self.model_name}"}}'
        rows = [
            ("vllm:num_requests_running", "gauge", "Requests in the running batch.", m["running"]),
            ("vllm:num_requests_waiting", "gauge", "Requests queued (new or preempted).", len(m["waiting_ids"])),
            ("vllm:kv_cache_usage_perc", "gauge", "Fraction of KV blocks in use (1 = full).", used / m["num_blocks"]),
            ("vllm:num_preemptions_total", "counter", "Sequences preempted (KV dropped).", m["preemptions"]),
            ("vllm:prefix_cache_queries_total", "counter", "Prompt tokens looked up.", m["prefix_queries"]),
            ("vllm:prefix_cache_hits_total", "counter", "Prompt tokens found in the prefix cache.", m["prefix_hits"]),
            ("vllm:prompt_tokens_total", "counter", "Prompt tokens received.", self.prompt_tokens),
            ("vllm:generation_tokens_total", "counter", "Tokens generated.", stats.tokens_generated),
            ("vllm:request_success_total", "counter", "Requests finished.", stats.requests_finished),
            ("z2v_engine_kv_blocks_used", "gauge", "KV blocks held by sequences.", used),
            ("z2v_engine_kv_blocks_free", "gauge", "KV blocks free (some still prefix-cached).", m["free_blocks"]),
            ("z2v_engine_kv_block_size", "gauge", "Tokens per KV block.", m["block_size"]),
            ("z2v_engine_steps_total", "counter", "Engine steps (forward passes).", stats.steps),
            ("z2v_engine_kv_utilization", "gauge", "Tokens stored / slots allocated, mean over steps.", kv["paged"]),
            ("z2v_engine_kv_utilization_contiguous", "gauge", "The same over max_model_len slabs.",
             kv["contiguous_max_len"]),
            # the sums behind the two means, so a client can take the mean over its own run
            ("z2v_engine_kv_steps_total", "counter", "Steps with sequences holding KV.", stats.kv_steps),
            ("z2v_engine_kv_utilization_sum_total", "counter", "Sum of the paged utilisation.", stats.kv_util_sum),
            ("z2v_engine_kv_utilization_contiguous_sum_total", "counter",
             "Sum over steps of the contiguous utilisation.", stats.contiguous_max_sum),
        ]
        lines = []
        for name, kind, help_text, value in rows:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{label} {value}"]
        lines += ["# HELP z2v_http_requests_total HTTP requests by path and status.",
                  "# TYPE z2v_http_requests_total counter"]
        lines += [f'z2v_http_requests_total{{path="{p}",code="{c}"}} {n}' for (p, c), n in self.http_requests.items()]
        return "\n".join(lines + process_memory_lines()) + "\n"

    # -- running -----------------------------------------------------------------------------

    async def serve(self, host: str, port: int, ready: threading.Event | None = None) -> None:
        self.loopback = host_name(host) in LOOPBACK or host.startswith("127.")
        self.thread = EngineThread(self.engine, asyncio.get_running_loop())
        self.thread.start()
        server = await asyncio.start_server(self.http.handle_connection, host, port, reuse_address=True,
                                            backlog=1024)
        self.port = server.sockets[0].getsockname()[1]  # the real one when port=0
        print(f"zero2vllm engine serving {self.model_name} on http://{host}:{self.port} (/v1/completions, /metrics)",
              flush=True)
        if ready is not None:
            ready.set()
        async with server:
            await server.serve_forever()


async def _send_event(ex: Exchange, obj) -> None:
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    await ex.send_chunk(f"data: {data}\n\n".encode())
