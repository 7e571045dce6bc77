"""Send hostile requests to the naive API and the engine's OpenAI server, only to 127.0.0.1.

    PYTHONPATH=src python benchmarks/fuzz_servers.py [--requests 2000] [--server naive|engine|both]
                                                     [--model FOLDER] [--seed 0]

Each server runs as its own process with one torch thread (so the fuzzing client keeps a core;
its RSS is read from /proc before and after). Every case
goes over a fresh socket and is one of these classes: fuzzed JSON fields (extreme numbers, lone
surrogates, NaN, wrong types, token ids past the vocabulary, poisoned stop_token_ids), bad JSON
(20,000-deep nesting, random bytes, invalid UTF-8), malformed HTTP (`Content-Length: abc`, a
70 KiB header line, bad chunking, no Host), cross-site shapes (text/plain, a foreign Host),
clients that hang up mid-generation, and a few good requests (some streamed). Beside them,
idle and half-sent connections are opened and must be closed by the server.

It counts answers by status, 5xx answers, connections closed without an answer, hangs (no answer
in --hang-s) and idle connections the server still holds, and ends with a good request.
tests/test_fuzz_servers.py runs the same cases, a few hundred per server.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

VALUES = ["null", "true", "false", "0", "-1", "1", "3", "-0.0", "1e-10", "1e-320", "1e308", "1e400", "-1e400",
          "NaN", "Infinity", "2" * 5000, str(2**70), '""', '"x"', '"\\ud800"', '"a\\udfffb"', '"\\u0000\xe9\xf0\x9f\x98\x80"',
          "[]", "[1, 2]", "[49151, 49152]", "[1000000000]", "[-1]", "{}", '{"a": 1}', '"' + "word " * 300 + '"',
          "[" * 50 + "]" * 50]
FIELDS = {"engine": ["prompt", "max_tokens", "min_tokens", "temperature", "top_p", "top_k", "stop_token_ids",
                     "stream", "stream_options", "ignore_eos", "model", "n", "stop", "logprobs", "seed"],
          "naive": ["prompt", "prompt_token_ids", "max_new_tokens", "temperature", "top_p", "top_k", "seed",
                    "ignore_eos", "chat"]}
PATHS = {"engine": "/v1/completions", "naive": "/generate"}


def http(method: str, path: str, body: bytes = b"", headers: dict | None = None, host: str = "127.0.0.1") -> bytes:
    head = {"Host": host, "Content-Type": "application/json", "Content-Length": str(len(body)),
            "Connection": "close", **(headers or {})}
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in head.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def good_body(kind: str, stream: bool = False) -> dict:
    if kind == "engine":
        return {"prompt": "Hello there", "max_tokens": 4, "temperature": 0, "ignore_eos": True, "stream": stream}
    return {"prompt": "Hello there", "max_new_tokens": 4, "ignore_eos": True}


def make_case(kind: str, rng: random.Random) -> tuple[str, bytes, bool]:
    """(class, raw bytes, whether the client hangs up right after sending)."""
    path = PATHS[kind]
    roll = rng.random()
    if roll < 0.45:  # fuzzed fields on a good body
        fields = {k: json.dumps(v) for k, v in good_body(kind, rng.random() < 0.3).items()}
        for _ in range(rng.randrange(1, 4)):
            fields[rng.choice(FIELDS[kind])] = rng.choice(VALUES)
        body = "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"
        return "fields", http("POST", path, body.encode("utf-8", "surrogatepass")), False
    if roll < 0.55:  # poisoned sampling parameters
        bad = rng.choice(['"stop_token_ids": [49152], "min_tokens": 1', '"stop_token_ids": [99999999]',
                          '"temperature": 1e-10', '"temperature": 1e-300', '"top_p": 0', '"top_k": -7',
                          '"min_tokens": 999', '"max_tokens": 99999999', '"max_new_tokens": 99999999'])
        base = json.dumps(good_body(kind))[:-1]
        return "poison", http("POST", path, f"{base}, {bad}}}".encode()), False
    if roll < 0.65:  # bad JSON
        body = rng.choice([b"[" * 20000 + b"]" * 20000, b'{"prompt": ' + b"[" * 20000,
                           bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))),
                           b'{"prompt": "\xff\xfe"}', b"", b"null", b'"just a string"'])
        return "json", http("POST", path, body), False
    if roll < 0.80:  # malformed HTTP
        body = json.dumps(good_body(kind)).encode()
        raw = rng.choice([
            http("POST", path, body, {"Content-Length": "abc"}),
            http("POST", path, body, {"Content-Length": "-5"}),
            http("POST", path, body, {"Content-Length": "99999999999999999999"}),
            http("POST", path, body, {"X-Big": "a" * (70 << 10)}),
            http("GET", "/" + "a" * (70 << 10)),
            http("POST", path, b"zz\r\nxx\r\n0\r\n\r\n", {"Content-Length": None, "Transfer-Encoding": "chunked"}),
            http("POST", path, b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
                 {"Content-Length": None, "Transfer-Encoding": "chunked"}),
            b"GARBAGE\r\n\r\n", b"\x00\x01\x02\r\n\r\n", b"GET /health\r\n\r\n",
            b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n",  # no Host
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\nConnection: close\r\n\r\n",
            http("BREW", "/health"), http("GET", "/health", headers={"X-\xff": "\xfe"}),
            http("GET", "http://127.0.0.1/health"),
            http("POST", path, body, {"Content-Length": str(len(body)) + ", 5"}),
        ])
        return "http", raw, False
    if roll < 0.88:  # cross-site shapes
        body = json.dumps(good_body(kind)).encode()
        raw = rng.choice([http("POST", path, body, {"Content-Type": "text/plain"}),
                          http("POST", path, body, {"Content-Type": None}),
                          http("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"}),
                          http("POST", path, body, host="evil.example"),
                          http("POST", path, body, host="127.0.0.1.evil.example:8000")])
        return "cross-site", raw, False
    if roll < 0.94:  # the client hangs up mid-generation
        body = dict(good_body(kind, rng.random() < 0.5))
        body["max_tokens" if kind == "engine" else "max_new_tokens"] = 64
        return "disconnect", http("POST", path, json.dumps(body).encode()), True
    return "good", http("POST", path, json.dumps(good_body(kind, rng.random() < 0.5)).encode()), False


def exchange(port: int, raw: bytes, hang_up: bool, hang_s: float) -> str:
    """'NNN' (the status), 'closed' (no answer), 'hang' (none in hang_s) or 'left' (we hung up)."""
    with socket.create_connection(("127.0.0.1", port), timeout=hang_s) as s:
        try:
            s.sendall(raw)
        except OSError:
            pass  # the server refused early (a huge header); its answer may still be readable
        if hang_up:
            return "left"
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            if data.startswith(b"HTTP/1.") and b" 200 " in data[:16]:
                while chunk := s.recv(65536):  # read a 200 to its end: a stream must finish
                    data += chunk
        except TimeoutError:
            return "hang"
        except ConnectionError:
            pass
    if not data.startswith(b"HTTP/1."):
        return "closed"
    status = data.split(b" ", 2)[1].decode()
    if status == "200" and b"text/event-stream" in data[:300] and b"data: [DONE]" not in data:
        return "cut"  # a stream that ended without [DONE]
    return status


def hold_idle(port: int, n: int) -> list[socket.socket]:
    """N connections that send nothing, or half a request, and wait: the server must close them."""
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        if i % 2:
            s.sendall(b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"pro")
        socks.append(s)
    return socks


def still_open(socks: list[socket.socket]) -> int:
    held = 0
    for s in socks:
        s.settimeout(0.01)
        try:
            while chunk := s.recv(65536):
                pass
        except TimeoutError:
            held += 1  # nothing from the server and not closed
        except OSError:
            pass
        s.close()
    return held


def fuzz(kind: str, port: int, n: int, seed: int = 0, hang_s: float = 60.0, idle: int = 50,
         idle_wait_s: float = 15.0, workers: int = 16) -> dict:
    rng = random.Random(seed)
    cases = [make_case(kind, rng) for _ in range(n)]
    idle_socks = hold_idle(port, idle)
    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(lambda c: (c[0], exchange(port, c[1], c[2], hang_s)), cases))
    bad = [repr(raw[:160]) for (_, raw, _), (_, o) in zip(cases, outcomes) if o in ("closed", "hang", "cut")]
    time.sleep(max(0.0, idle_wait_s - (time.monotonic() - started)))
    counts: dict[str, dict[str, int]] = {}
    for cls, outcome in outcomes:
        counts.setdefault(cls, {})
        counts[cls][outcome] = counts[cls].get(outcome, 0) + 1
    flat = [o for _, o in outcomes]
    good = exchange(port, http("POST", PATHS[kind], json.dumps(good_body(kind)).encode()), False, hang_s)
    return {"server": kind, "requests": n, "by_class": counts,
            "5xx": sum(o.startswith("5") for o in flat), "closed_without_answer": flat.count("closed"),
            "hangs": flat.count("hang"), "streams_cut": flat.count("cut"), "idle_held": still_open(idle_socks),
            "idle_opened": idle, "good_after": good, "failed_examples": bad[:5]}


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def start(kind: str, model: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if kind == "engine":
        cmd = [sys.executable, "-m", "zero2vllm", "serve", "engine", "--model", model, "--port", str(port),
               "--max-model-len", "256", "--num-kv-blocks", "128", "--max-num-seqs", "16", "--threads", "1"]
    else:
        cmd = [sys.executable, "-m", "zero2vllm", "serve", "naive", "--model", model, "--port", str(port),
               "--max-model-len", "256", "--max-new-tokens-limit", "64", "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if exchange(port, http("GET", "/health"), False, 5) == "200":
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"the {kind} server did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--server", choices=["naive", "engine", "both"], default="both")
    ap.add_argument("--model", default=None, help="a model folder (default: the tiny random test model)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--port", type=int, default=8071)
    args = ap.parse_args()
    if args.model is None:
        from zero2vllm.models import ensure_tiny_model_dir

        args.model = str(ensure_tiny_model_dir())
    for kind in (["naive", "engine"] if args.server == "both" else [args.server]):
        proc = start(kind, args.model, args.port)
        try:
            before = rss_mb(proc.pid)
            result = fuzz(kind, args.port, args.requests, args.seed)
            result["rss_mb_before"], result["rss_mb_after"] = round(before, 1), round(rss_mb(proc.pid), 1)
            print(json.dumps(result), flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
