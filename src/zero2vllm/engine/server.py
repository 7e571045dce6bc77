"""An OpenAI-compatible HTTP server for the engine, on the standard library's asyncio.

Two threads. The engine thread loops `engine.step()` and, after each step, hands every new token
to the asyncio thread in one `call_soon_threadsafe`. The asyncio thread speaks HTTP/1.1 (keep-
alive, chunked server-sent events), tokenizes prompts, detokenizes streamed tokens, and never
waits on the model. No web framework: a request line, headers and a body are ~30 lines to read,
and on a 2-core machine every microsecond the server spends is a microsecond the model lacks.

Endpoints: POST /v1/completions (stream or not, `usage`, stream_options.include_usage,
max_tokens, min_tokens, ignore_eos, temperature; prompt as a string or token ids),
GET /v1/models, GET /health, GET /metrics (Prometheus; the engine gauges use vLLM's metric names
so `z2v compare` and vLLM's dashboards read them unchanged).

    python -m zero2vllm.engine.server --model smollm2 --port 8000     (or: z2v serve engine)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import sys
import threading
import time
import uuid

from .llm_engine import LLMEngine
from .sequence import SamplingParams, Sequence

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           413: "Payload Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}
MAX_BODY = 4 << 20


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class EngineThread(threading.Thread):
    """Owns the engine: only this thread touches the scheduler. Others talk to it through `inbox`."""

    def __init__(self, engine: LLMEngine, loop: asyncio.AbstractEventLoop):
        super().__init__(name="engine", daemon=True)
        self.engine, self.loop = engine, loop
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.streams: dict[int, asyncio.Queue] = {}

    def submit(self, seq: Sequence) -> asyncio.Queue:
        out: asyncio.Queue = asyncio.Queue()
        self.inbox.put(("add", seq, out))
        return out

    def abort(self, seq: Sequence) -> None:
        self.inbox.put(("abort", seq, None))

    def run(self) -> None:
        engine = self.engine
        while True:
            block = not engine.has_work()  # idle: sleep until a request arrives
            try:
                while True:
                    kind, seq, out = self.inbox.get(block=block)
                    block = False
                    if kind == "add":
                        self.streams[seq.seq_id] = out
                        engine.scheduler.add(seq)
                    elif self.streams.pop(seq.seq_id, None) is not None:
                        engine.abort(seq)
            except queue.Empty:
                pass
            try:
                updated = engine.step()
            except Exception as exc:  # report to every waiting client instead of dying silently
                print(f"engine step failed: {exc!r}", file=sys.stderr, flush=True)
                for seq in list(engine.scheduler.running) + list(engine.scheduler.waiting):
                    engine.abort(seq)
                events = [(q, None, f"error: {exc}") for q in self.streams.values()]
                self.streams.clear()
                self.loop.call_soon_threadsafe(_deliver, events)
                continue
            events = []
            for seq in updated:
                out = self.streams.pop(seq.seq_id) if seq.is_finished else self.streams.get(seq.seq_id)
                if out is not None:
                    events.append((out, seq.last_token, seq.finish_reason))
            if events:
                self.loop.call_soon_threadsafe(_deliver, events)


def _deliver(events) -> None:
    for out, token, finish_reason in events:
        out.put_nowait((token, finish_reason))


class Detokenizer:
    """Streamed text, token by token, without splitting multi-byte characters (vLLM's method)."""

    def __init__(self, tokenizer, prompt_ids: list[int]):
        self.tok, self.ids = tokenizer, list(prompt_ids[-5:])  # a little context for leading spaces
        self.prefix_offset, self.read_offset = 0, len(self.ids)

    def add(self, token_id: int) -> str:
        if self.tok is None:
            return ""
        self.ids.append(token_id)
        prefix = self.tok.decode(self.ids[self.prefix_offset:self.read_offset], skip_special_tokens=True)
        text = self.tok.decode(self.ids[self.prefix_offset:], skip_special_tokens=True)
        if len(text) > len(prefix) and not text.endswith("\ufffd"):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return text[len(prefix):]
        return ""


def parse_completion_request(data, model_name: str):
    """Validate an OpenAI /v1/completions body -> (prompt, SamplingParams, stream, include_usage)."""
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    if data.get("model") not in (None, model_name):
        raise BadRequest(f"The model `{data['model']}` does not exist; this server has `{model_name}`", 404)
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    is_ids = isinstance(prompt, list) and prompt and all(type(t) is int for t in prompt)
    if not (isinstance(prompt, str) and prompt) and not is_ids:
        raise BadRequest("`prompt` must be a non-empty string or a list of token ids (one prompt per request)")
    unsupported = {"n": 1, "best_of": 1, "echo": False, "logprobs": None, "suffix": None, "top_p": 1.0,
                   "top_k": -1, "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
                   "seed": None, "logit_bias": None}
    for key, default in unsupported.items():
        if data.get(key) not in (None, default) and not (key == "top_k" and data.get(key) == 0):
            raise BadRequest(f"`{key}` is not supported by this engine (leave it out or use {default})")
    if data.get("stop") not in (None, "", []):
        raise BadRequest("`stop` strings are not supported; use stop_token_ids")

    def typed(key, kind, default):
        value = data.get(key, default)
        value = default if value is None else value
        if kind is float and type(value) is int:
            value = float(value)
        if type(value) is not kind:
            raise BadRequest(f"`{key}` must be {kind.__name__}")
        return value

    stop_ids = data.get("stop_token_ids") or []
    if not isinstance(stop_ids, list) or not all(type(t) is int for t in stop_ids):
        raise BadRequest("`stop_token_ids` must be a list of token ids")
    options = data.get("stream_options") or {}
    if not isinstance(options, dict):
        raise BadRequest("`stream_options` must be an object")
    try:
        params = SamplingParams(temperature=typed("temperature", float, 1.0), max_tokens=typed("max_tokens", int, 16),
                                min_tokens=typed("min_tokens", int, 0), ignore_eos=typed("ignore_eos", bool, False),
                                stop_token_ids=tuple(stop_ids))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return prompt, params, typed("stream", bool, False), bool(options.get("include_usage"))


class Server:
    def __init__(self, engine: LLMEngine, model_name: str):
        self.engine, self.model_name = engine, model_name
        self.thread: EngineThread | None = None
        self.http_requests: dict[tuple[str, int], int] = {}
        self.prompt_tokens = 0
        self.port = 0

    # -- HTTP plumbing -------------------------------------------------------------------------

    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line.strip():
                    break
                parts = line.decode("latin-1").split()
                headers = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    key, _, value = h.decode("latin-1").partition(":")
                    headers[key.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                if len(parts) != 3 or length < 0 or length > MAX_BODY:
                    await self.send_json(writer, 413 if length > MAX_BODY else 400, _error("malformed request"))
                    break
                body = await reader.readexactly(length) if length else b""
                await self.dispatch(parts[0], parts[1].split("?")[0], body, writer)
                if headers.get("connection", "").lower() == "close" or parts[2] == "HTTP/1.0":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def send_json(self, writer, status: int, obj, content_type="application/json") -> None:
        body = obj.encode() if isinstance(obj, str) else json.dumps(obj).encode()
        writer.write(f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()

    async def dispatch(self, method: str, path: str, body: bytes, writer) -> None:
        routes = {("GET", "/health"): self.health, ("GET", "/v1/models"): self.models,
                  ("GET", "/metrics"): self.metrics, ("POST", "/v1/completions"): self.completions}
        handler = routes.get((method, path))
        if handler is None:
            known = any(p == path for _, p in routes)
            status = 405 if known else 404
            await self.send_json(writer, status, _error(f"{method} {path} is not an endpoint here"))
        else:
            try:
                status = await handler(body, writer)
            except (ConnectionError, asyncio.CancelledError):
                raise
            except Exception as exc:  # a bug must cost one request, not the connection loop
                status = 500
                await self.send_json(writer, 500, _error(f"internal error: {exc!r}", "server_error"))
        key = (path if handler else "other", status)
        self.http_requests[key] = self.http_requests.get(key, 0) + 1

    # -- endpoints -------------------------------------------------------------------------------

    async def health(self, body, writer) -> int:
        alive = self.thread is not None and self.thread.is_alive()
        await self.send_json(writer, 200 if alive else 503, {"status": "ok" if alive else "engine stopped"})
        return 200 if alive else 503

    async def models(self, body, writer) -> int:
        card = {"id": self.model_name, "object": "model", "created": int(time.time()), "owned_by": "zero2vllm",
                "max_model_len": self.engine.config.max_model_len}
        await self.send_json(writer, 200, {"object": "list", "data": [card]})
        return 200

    async def completions(self, body: bytes, writer) -> int:
        try:
            prompt, params, stream, include_usage = parse_completion_request(json.loads(body or b"null"),
                                                                             self.model_name)
            seq = self.engine.make_sequence(prompt, params, request_id=f"cmpl-{uuid.uuid4().hex}")
        except json.JSONDecodeError:
            seq, err = None, BadRequest("the body is not valid JSON")
        except (BadRequest, ValueError) as exc:
            seq, err = None, exc
        if seq is None:
            status = getattr(err, "status", 400)
            await self.send_json(writer, status, _error(str(err)))
            return status
        self.prompt_tokens += seq.num_prompt_tokens
        tokens = self.thread.submit(seq)
        detok = Detokenizer(self.engine.tokenizer, seq.token_ids) if stream else None
        head = {"id": seq.request_id, "object": "text_completion", "created": int(time.time()),
                "model": self.model_name}
        try:
            if stream:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
            finish = None
            while finish is None:
                token, finish = await tokens.get()
                if token is None:  # the engine failed
                    raise RuntimeError(finish)
                if stream:
                    choice = {"index": 0, "text": detok.add(token), "logprobs": None, "finish_reason": finish}
                    await _send_event(writer, {**head, "choices": [choice]} | ({"usage": None} if include_usage else {}))
            usage = {"prompt_tokens": seq.num_prompt_tokens, "completion_tokens": seq.num_completion_tokens,
                     "total_tokens": len(seq)}
            if not stream:
                tok = self.engine.tokenizer
                text = tok.decode(seq.completion_token_ids, skip_special_tokens=True) if tok else ""
                choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
                await self.send_json(writer, 200, {**head, "choices": [choice], "usage": usage})
                return 200
            if include_usage:
                await _send_event(writer, {**head, "choices": [], "usage": usage})
            await _send_event(writer, "[DONE]")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return 200
        except (ConnectionError, asyncio.CancelledError):
            self.thread.abort(seq)  # the client went away: free its blocks
            raise
        except RuntimeError as exc:
            if not stream:
                await self.send_json(writer, 500, _error(str(exc), "server_error"))
            raise ConnectionError from exc  # mid-stream: all we can do is close the connection

    async def metrics(self, body, writer) -> int:
        await self.send_json(writer, 200, self.render_metrics(), "text/plain; version=0.0.4")
        return 200

    def render_metrics(self) -> str:
        from zero2vllm.instruments.metrics import process_memory_lines

        e, bm = self.engine, self.engine.block_manager
        label = f'{{model_name="{self.model_name}"}}'
        used = bm.num_blocks - bm.num_free_blocks
        kv = e.stats.kv_summary()
        rows = [
            ("vllm:num_requests_running", "gauge", "Requests in the running batch.", len(e.scheduler.running)),
            ("vllm:num_requests_waiting", "gauge", "Requests queued (new or preempted).", len(e.scheduler.waiting)),
            ("vllm:kv_cache_usage_perc", "gauge", "Fraction of KV blocks in use (1 = full).", used / bm.num_blocks),
            ("vllm:num_preemptions_total", "counter", "Sequences preempted (KV dropped, recomputed later).",
             e.scheduler.num_preemptions),
            ("vllm:prefix_cache_queries_total", "counter", "Prompt tokens looked up in the prefix cache.",
             bm.prefix_queries),
            ("vllm:prefix_cache_hits_total", "counter", "Prompt tokens found in the prefix cache.", bm.prefix_hits),
            ("vllm:prompt_tokens_total", "counter", "Prompt tokens received.", self.prompt_tokens),
            ("vllm:generation_tokens_total", "counter", "Tokens generated.", e.stats.tokens_generated),
            ("vllm:request_success_total", "counter", "Requests finished.", e.stats.requests_finished),
            ("z2v_engine_kv_blocks_used", "gauge", "KV blocks held by sequences.", used),
            ("z2v_engine_kv_blocks_free", "gauge", "KV blocks on the free list (some still prefix-cached).",
             bm.num_free_blocks),
            ("z2v_engine_kv_block_size", "gauge", "Tokens per KV block.", bm.block_size),
            ("z2v_engine_steps_total", "counter", "Engine steps (forward passes).", e.stats.steps),
            ("z2v_engine_kv_utilization", "gauge", "Tokens stored / slots allocated, mean over steps.", kv["paged"]),
            ("z2v_engine_kv_utilization_contiguous", "gauge",
             "The same tokens over a contiguous max_model_len slab per request.", kv["contiguous_max_len"]),
            # the sums behind the two means, so a client can take the mean over its own run
            ("z2v_engine_kv_steps_total", "counter", "Steps with sequences holding KV.", e.stats.kv_steps),
            ("z2v_engine_kv_utilization_sum_total", "counter", "Sum over steps of the paged utilisation.",
             e.stats.kv_util_sum),
            ("z2v_engine_kv_utilization_contiguous_sum_total", "counter",
             "Sum over steps of the contiguous utilisation.", e.stats.contiguous_max_sum),
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
        self.thread = EngineThread(self.engine, asyncio.get_running_loop())
        self.thread.start()
        server = await asyncio.start_server(self.handle_connection, host, port, reuse_address=True, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]  # the real one when port=0
        print(f"zero2vllm engine serving {self.model_name} on http://{host}:{self.port} (/v1/completions, /metrics)",
              flush=True)
        if ready is not None:
            ready.set()
        async with server:
            await server.serve_forever()


async def _send_event(writer, obj) -> None:
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    payload = f"data: {data}\n\n".encode()
    writer.write(b"%x\r\n%s\r\n" % (len(payload), payload))
    await writer.drain()


def _error(message: str, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="z2v serve engine", description="Serve a Llama-architecture model with "
                                 "zero2vllm's engine behind an OpenAI-compatible API.")
    ap.add_argument("--model", default="smollm2", help="smollm2 | a Hugging Face model folder | a cached HF id")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--served-model-name", default=None, help="the name /v1/models reports (default: folder name)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (CUDA default)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--kv-cache-gb", type=float, default=1.0)
    ap.add_argument("--num-kv-blocks", type=int, default=None, help="overrides --kv-cache-gb")
    ap.add_argument("--max-num-seqs", type=int, default=64)
    ap.add_argument("--max-num-batched-tokens", type=int, default=2048,
                    help="token budget per step (default 2048, vLLM's for its CPU server)")
    ap.add_argument("--max-model-len", type=int, default=None)
    ap.add_argument("--no-prefix-caching", action="store_true")
    ap.add_argument("--no-cpu-kernel", action="store_true",
                    help="CPU: decode attention by gather + SDPA instead of the C++ kernel (to compare)")
    ap.add_argument("--enforce-eager", action="store_true", help="CUDA: no CUDA graphs")
    return ap


def engine_from_args(args) -> tuple[LLMEngine, str]:
    from .config import EngineConfig
    from zero2vllm.models import ensure_model_dir

    folder = ensure_model_dir(args.model)
    dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    config = EngineConfig(model=str(folder), device=args.device, dtype=dtype, block_size=args.block_size,
                          kv_cache_gb=args.kv_cache_gb, num_kv_blocks=args.num_kv_blocks,
                          max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
                          max_model_len=args.max_model_len, enable_prefix_caching=not args.no_prefix_caching,
                          enforce_eager=args.enforce_eager, num_threads=args.threads,
                          cpu_decode_kernel=not args.no_cpu_kernel)
    engine = LLMEngine(config)
    engine.generate([[1, 2, 3, 4]], SamplingParams(max_tokens=2))  # warm-up: first-call costs before serving
    engine.stats = type(engine.stats)()
    return engine, args.served_model_name or folder.name


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        engine, name = engine_from_args(args)
    except Exception as exc:  # a bad --model (ModelError), config.json, or flag value: one line, no trace
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(Server(engine, name).serve(args.host, args.port))
    except OSError as exc:
        print(f"Error: cannot listen on {args.host}:{args.port}: {exc.strerror}; pick another --port", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
