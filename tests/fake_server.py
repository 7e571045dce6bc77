"""A fake LLM server with known timings, for measuring the benchmark itself.

It generates nothing: it answers after exactly the delays it is told, so a benchmark pointed
at it must report those delays (accuracy) and must sustain far more requests per second than
any real server (overhead). Plain asyncio streams, no framework, keep-alive HTTP/1.1, so the
server is never the bottleneck.

    POST /generate         -> after --delay s: {"text", "prompt_tokens", "completion_tokens"}
    POST /v1/completions   stream=true: first chunk after --ttft s, then one chunk per token
                           every --itl s, then a usage chunk and [DONE] (vLLM's SSE format);
                           stream=false: one JSON after ttft + (n-1) x itl
    GET  /v1/models, /health, /metrics (process_resident_memory_bytes)
    GET  /fake/timings     each POST's time inside the server (to separate the server's own
                           scheduling delays from the benchmark's overhead)
    GET  /fake/prompts     every prompt received, in order (the last 100,000)

    python -m fake_server --port 0 --delay 0.05   # prints "listening on http://..."
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


SPIN_S = 0.002


async def precise_sleep(seconds: float) -> None:
    """asyncio.sleep wakes up to a millisecond or two late (epoll's granularity, scheduling):
    sleep until 2 ms before the deadline, then spin, so the server's delay is the one asked for."""
    if seconds <= 0:
        return
    deadline = time.perf_counter() + seconds
    if seconds > SPIN_S:
        await asyncio.sleep(seconds - SPIN_S)
    while time.perf_counter() < deadline:
        pass


class FakeLLMServer:
    def __init__(self, *, delay: float = 0.0, ttft: float = 0.0, itl: float = 0.0,
                 model: str = "fake-model"):
        self.delay, self.ttft, self.itl, self.model = delay, ttft, itl, model
        self.requests = 0
        self.generate_count = 0  # /generate and /v1/completions answered
        self.generate_seconds = 0.0  # their time inside the server: body read -> last byte written
        self.timings: list[float] = []  # the same, per request, in order (the last 100,000)
        self.prompts: list = []

    # -- HTTP plumbing ------------------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, path, _version = lines[0].split(" ", 2)
                except ValueError:
                    return
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length") or 0)
                body = await reader.readexactly(n) if n else b""
                self.requests += 1
                t0 = time.perf_counter()
                path = path.split("?", 1)[0]
                await self.route(method, path, body, writer)
                if method == "POST":
                    took = time.perf_counter() - t0
                    self.generate_count += 1
                    self.generate_seconds += took
                    self.timings.append(took)
                    if len(self.timings) > 100_000:
                        del self.timings[:50_000]
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    @staticmethod
    def _head(code: int, ctype: str, length: int | None) -> bytes:
        h = f"HTTP/1.1 {code} {REASONS.get(code, 'OK')}\r\nContent-Type: {ctype}\r\n"
        h += f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
        return (h + "Connection: keep-alive\r\n\r\n").encode()

    async def send(self, writer, code: int, obj, ctype: str = "application/json") -> None:
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        writer.write(self._head(code, ctype, len(data)) + data)
        await writer.drain()

    # -- endpoints ----------------------------------------------------------------------------
    async def route(self, method: str, path: str, body: bytes, writer) -> None:
        if method == "GET" and path == "/health":
            return await self.send(writer, 200, {"status": "ok", "model": self.model})
        if method == "GET" and path == "/fake/timings":  # per-request server time, for accuracy tests
            return await self.send(writer, 200, {"seconds": self.timings})
        if method == "GET" and path == "/fake/prompts":
            return await self.send(writer, 200, {"prompts": self.prompts})
        if method == "GET" and path == "/v1/models":
            return await self.send(writer, 200, {"object": "list", "data": [{"id": self.model}]})
        if method == "GET" and path == "/metrics":
            from zero2vllm.instruments.metrics import process_memory_lines

            text = "\n".join(process_memory_lines() + [
                f"fake_requests_total {self.requests}",
                f"fake_generate_seconds_sum {self.generate_seconds:.9f}",
                f"fake_generate_seconds_count {self.generate_count}",
            ]) + "\n"
            return await self.send(writer, 200, text.encode(), "text/plain; version=0.0.4")
        if method != "POST" or path not in ("/generate", "/v1/completions"):
            return await self.send(writer, 404 if method == "POST" or method == "GET" else 405,
                                   {"error": f"no {method} {path}"})
        try:
            req = json.loads(body or b"null")
            assert isinstance(req, dict)
        except (ValueError, AssertionError):
            return await self.send(writer, 400, {"error": "the body is not a JSON object"})
        prompt = req.get("prompt") or req.get("prompt_token_ids") or ""
        prompt_tokens = len(prompt) if isinstance(prompt, list) else len(str(prompt).split())
        self.prompts = self.prompts[-99_999:] + [prompt]
        if path == "/generate":
            n = int(req.get("max_new_tokens", 16))
            if self.delay:
                await precise_sleep(self.delay)
            return await self.send(writer, 200, {"text": "x" * n, "prompt_tokens": prompt_tokens,
                                                 "completion_tokens": n})
        n = int(req.get("max_tokens", 16))
        if not req.get("stream"):
            await precise_sleep(self.ttft + max(n - 1, 0) * self.itl)
            return await self.send(writer, 200, {
                "choices": [{"index": 0, "text": "x" * n, "finish_reason": "length"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n},
            })
        writer.write(self._head(200, "text/event-stream", None))
        for i in range(n):
            await precise_sleep(self.ttft if i == 0 else self.itl)
            event = {"id": "cmpl-fake", "object": "text_completion", "model": self.model,
                     "choices": [{"index": 0, "text": "x", "finish_reason": "length" if i == n - 1 else None}]}
            self._chunk(writer, f"data: {json.dumps(event)}\n\n".encode())
            await writer.drain()
        usage = {"id": "cmpl-fake", "choices": [], "usage": {"prompt_tokens": prompt_tokens,
                                                             "completion_tokens": n}}
        self._chunk(writer, f"data: {json.dumps(usage)}\n\n".encode())
        self._chunk(writer, b"data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    @staticmethod
    def _chunk(writer, data: bytes) -> None:
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


class FakeServerThread:
    """The fake server on its own event loop in a daemon thread (for tests)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **kwargs):
        self.fake = FakeLLMServer(**kwargs)
        self.host, self.port = host, port
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.server = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start():
            self.server = await asyncio.start_server(self.fake.handle, self.host, self.port)
            self.port = self.server.sockets[0].getsockname()[1]
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "FakeServerThread":
        self.thread.start()
        self.ready.wait(10)
        return self

    def stop(self) -> None:
        async def close():
            self.server.close()
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(close(), self.loop)
        self.thread.join(timeout=5)
        self.loop.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


async def _serve(args) -> None:
    fake = FakeLLMServer(delay=args.delay, ttft=args.ttft, itl=args.itl)
    server = await asyncio.start_server(fake.handle, args.host, args.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on http://{args.host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m fake_server", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before /generate answers")
    ap.add_argument("--ttft", type=float, default=0.0, help="seconds before the first streamed token")
    ap.add_argument("--itl", type=float, default=0.0, help="seconds between streamed tokens")
    args = ap.parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
