"""The serving-api lab's criteria: start the learner's Flask app, drive it over HTTP, check it.

The app is built with the learner's `create_app(model_dir)` and served by a threaded werkzeug
server on a free port of 127.0.0.1 in this (child) process; every request has a timeout, so a
hang is a failed criterion, never a stuck check. The model is the embedded SmolLM2 (with
--fast, the tool's own tests: a random tiny Llama with SmolLM2's tokenizer).
"""

from __future__ import annotations

import json
import random
import threading
import urllib.error
import urllib.request

from zero2vllm.labs.framework import CheckFailed, criterion

PROMPT = "The capital of France is"
TIMEOUT_S = 60.0


def setup(ctx) -> None:
    import torch

    torch.set_num_threads(2)


# -- helpers ------------------------------------------------------------------------------------
class Reply:
    def __init__(self, status: int, body: bytes, ctype: str):
        self.status, self.body, self.ctype = status, body, ctype

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def short(self) -> str:
        return f"HTTP {self.status} {self.body[:160].decode('utf-8', 'replace')!r}"


def http(ctx, method: str, path: str, body: bytes | None = None, timeout: float = TIMEOUT_S) -> Reply:
    url = ctx.state["url"] + path
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": "application/json"} if body is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Reply(r.status, r.read(), r.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.read(), e.headers.get("Content-Type", ""))
    except (TimeoutError, OSError) as exc:  # socket.timeout is a TimeoutError
        if "timed out" in str(exc) or isinstance(exc, TimeoutError):
            raise CheckFailed(f"{method} {path} got no answer within {timeout:.0f} s (a hang)",
                              got=(body or b"")[:120].decode("utf-8", "replace"),
                              hint="validate the request before calling model.generate") from None
        raise CheckFailed(f"{method} {path} failed: {exc}", hint="did the server crash?") from None


def post(ctx, obj, raw: bool = False, timeout: float = TIMEOUT_S) -> Reply:
    return http(ctx, "POST", "/generate", obj if raw else json.dumps(obj).encode(), timeout)


def server(ctx):
    if "url" not in ctx.state:
        raise CheckFailed("not run: the app did not start (see `app starts and answers /health`)")
    return ctx.state


def model_dir(ctx):
    from zero2vllm.models import ensure_model_dir, ensure_tiny_model_dir

    if "model_dir" not in ctx.state:
        ctx.state["model_dir"] = ensure_tiny_model_dir() if ctx.fast else ensure_model_dir("smollm2")
    return ctx.state["model_dir"]


def expected(ctx, prompt: str, max_new: int):
    """The model's own greedy continuation, decoded as the interface asks (new tokens only)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if "ref" not in ctx.state:
        folder = str(model_dir(ctx))
        ctx.state["ref"] = (AutoModelForCausalLM.from_pretrained(folder).eval(),
                            AutoTokenizer.from_pretrained(folder))
    model, tok = ctx.state["ref"]
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                             do_sample=False, pad_token_id=tok.eos_token_id)
    new = out[0, ids.shape[1]:]
    return tok.decode(new, skip_special_tokens=True), ids.shape[1], len(new), model.config


# -- criteria -----------------------------------------------------------------------------------
@criterion("app starts and answers /health")
def starts(ctx):
    from werkzeug.serving import WSGIRequestHandler, make_server

    create = getattr(ctx.module, "create_app", None)
    if create is None:
        raise CheckFailed("app.py has no create_app(model_dir)", hint="keep the scaffold's create_app")
    app = create(str(model_dir(ctx)))
    if not callable(app) or not hasattr(app, "wsgi_app"):
        raise CheckFailed("create_app did not return a Flask app", got=type(app).__name__,
                          hint="return the Flask(...) object you added the routes to")

    class Quiet(WSGIRequestHandler):
        def log_request(self, *a, **k):
            pass

    httpd = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    ctx.state["url"] = f"http://127.0.0.1:{httpd.server_port}"
    r = http(ctx, "GET", "/health")
    if r.status != 200:
        del ctx.state["url"]
        raise CheckFailed("GET /health did not answer 200", got=r.short())
    return f"serving on {ctx.state['url']}; /health: {r.body[:60].decode('utf-8', 'replace')}"


@criterion("POST /generate returns the greedy continuation")
def generate(ctx):
    server(ctx)
    want, n_prompt, n_new, _ = expected(ctx, PROMPT, 8)
    r = post(ctx, {"prompt": PROMPT, "max_new_tokens": 8, "temperature": 0})
    data = r.json()
    if r.status != 200 or not isinstance(data, dict):
        raise CheckFailed("a valid request did not get a 200 JSON answer", got=r.short())
    for key, kind in (("text", str), ("prompt_tokens", int), ("completion_tokens", int),
                      ("latency_ms", (int, float))):
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise CheckFailed(f"the answer lacks {key!r} ({kind if isinstance(kind, type) else 'a number'})",
                              got=json.dumps(data)[:200],
                              hint='answer {"text", "prompt_tokens", "completion_tokens", "latency_ms"}')
    text = data["text"]
    if text.strip() != want.strip():
        if text.strip().startswith(PROMPT):
            raise CheckFailed("the text repeats the prompt", got=repr(text[:120]),
                              hint="decode only the new tokens: out[0, prompt_len:]")
        raise CheckFailed("the text is not the model's greedy continuation",
                          expected=repr(want), got=repr(text[:120]),
                          hint="temperature 0 means do_sample=False; no chat template; "
                               "decode with skip_special_tokens=True")
    if data["prompt_tokens"] != n_prompt or data["completion_tokens"] != n_new:
        raise CheckFailed("the token counts are wrong",
                          expected=f"prompt_tokens {n_prompt}, completion_tokens {n_new}",
                          got=f"prompt_tokens {data['prompt_tokens']}, completion_tokens {data['completion_tokens']}")
    if data["latency_ms"] <= 0:
        raise CheckFailed("latency_ms should be the request's time in milliseconds", got=str(data["latency_ms"]))
    again = post(ctx, {"prompt": PROMPT, "max_new_tokens": 8}).json() or {}
    if again.get("text") != text:
        raise CheckFailed("the default temperature is not greedy: the same request gave another text",
                          hint="temperature defaults to 0 (greedy)")
    ctx.metrics["latency_ms_8_tokens"] = data["latency_ms"]
    short = post(ctx, {"prompt": PROMPT, "max_new_tokens": 3}).json() or {}
    if not isinstance(short.get("completion_tokens"), int) or not 1 <= short["completion_tokens"] <= 3:
        raise CheckFailed("max_new_tokens 3 did not limit the answer to 3 tokens",
                          got=json.dumps(short)[:200], hint="pass max_new_tokens to model.generate")
    return f"{PROMPT!r} -> {text!r} ({n_new} tokens, {data['latency_ms']:.0f} ms)"


def bad_requests(config) -> list[tuple[str, bytes]]:
    context = getattr(config, "max_position_embeddings", 8192)
    return [
        ("not JSON", b"this is not json"),
        ("an empty body", b""),
        ("a JSON array", b"[1, 2, 3]"),
        ("no prompt", b'{"max_new_tokens": 5}'),
        ("prompt a number", b'{"prompt": 123}'),
        ("prompt null", b'{"prompt": null}'),
        ("prompt a list", b'{"prompt": ["a", "b"]}'),
        ("an empty prompt", b'{"prompt": ""}'),
        ("max_new_tokens a string", b'{"prompt": "hi", "max_new_tokens": "5"}'),
        ("max_new_tokens a float", b'{"prompt": "hi", "max_new_tokens": 2.5}'),
        ("max_new_tokens true", b'{"prompt": "hi", "max_new_tokens": true}'),
        ("max_new_tokens 0", b'{"prompt": "hi", "max_new_tokens": 0}'),
        ("max_new_tokens negative", b'{"prompt": "hi", "max_new_tokens": -4}'),
        ("max_new_tokens 100000", b'{"prompt": "hi", "max_new_tokens": 100000}'),
        ("temperature a string", b'{"prompt": "hi", "temperature": "hot"}'),
        ("temperature negative", b'{"prompt": "hi", "temperature": -1}'),
        (f"a prompt longer than the context ({context} tokens)",
         json.dumps({"prompt": "hello " * (context + 50), "max_new_tokens": 4}).encode()),
    ]


@criterion("bad requests get a 400 with a JSON error")
def errors(ctx):
    server(ctx)
    _, _, _, config = expected(ctx, PROMPT, 1)
    failures = []
    for name, body in bad_requests(config):
        r = post(ctx, body, raw=True, timeout=30)
        data = r.json()
        if r.status != 400 or not isinstance(data, dict) or not isinstance(data.get("error"), str):
            failures.append(f"{name}: {r.short()}")
    if failures:
        raise CheckFailed(f"{len(failures)} of {len(bad_requests(config))} bad requests were not a 400 "
                          'with {"error": "..."}', got="\n     ".join([""] + failures),
                          hint="validate every field before generating; return jsonify(error=...), 400")
    return f"{len(bad_requests(config))} malformed requests: each a 400 with a JSON error"


@criterion("survives a fuzz run of malformed requests")
def fuzz(ctx):
    server(ctx)
    rng = random.Random(20240)
    values = [None, True, False, 0, -1, 7, 2**64, 1e300, "", "x", "\u00e9\u0000\U0001F600", [], [1], {},
              {"a": 1}, "NaN"]
    keys = ["prompt", "max_new_tokens", "temperature", "top_p", "seed", "stream", "extra"]
    bad = []
    n = 60 if ctx.fast else 100
    for i in range(n):
        if i % 4 == 0:
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        else:
            body = {"prompt": "hi", "max_new_tokens": 2}
            for _ in range(rng.randrange(1, 4)):
                body[rng.choice(keys)] = rng.choice(values)
            raw = json.dumps(body).encode()
        r = post(ctx, raw, raw=True, timeout=30)
        if r.status >= 500 or not isinstance(r.json(), dict):
            bad.append(f"{raw[:80]!r} -> {r.short()}")
    r = http(ctx, "GET", "/health")
    ok = post(ctx, {"prompt": PROMPT, "max_new_tokens": 2})
    if bad:
        raise CheckFailed(f"{len(bad)} fuzzed requests got a server error or a non-JSON answer",
                          got="\n     ".join([""] + bad[:5]),
                          hint="every path must end in a JSON answer: 200 or 400, never 500")
    if r.status != 200 or ok.status != 200:
        raise CheckFailed("after the fuzz run the app no longer answers", got=f"{r.short()} / {ok.short()}")
    return f"{n} random malformed requests: no 5xx, every answer JSON, still serving"


@criterion("concurrent requests are all answered")
def concurrent(ctx):
    server(ctx)
    want, _, _, _ = expected(ctx, PROMPT, 6)
    replies: list = [None] * 4

    def one(i):
        try:
            replies[i] = post(ctx, {"prompt": PROMPT, "max_new_tokens": 6})
        except CheckFailed as exc:
            replies[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT_S * 2)
    for r in replies:
        if isinstance(r, CheckFailed):
            raise r
        data = r.json() if r is not None else None
        if r is None or r.status != 200 or not isinstance(data, dict):
            raise CheckFailed("one of 4 simultaneous requests failed", got=r.short() if r else "no answer",
                              hint="guard model.generate with a threading.Lock")
        if str(data.get("text", "")).strip() != want.strip():
            raise CheckFailed("simultaneous requests got different or wrong texts",
                              expected=repr(want), got=repr(data.get("text")),
                              hint="guard model.generate with a threading.Lock")
    return "4 simultaneous requests: 4 correct answers"


@criterion("GET /metrics speaks Prometheus")
def metrics(ctx):
    from zero2vllm.serving.metrics import parse_prometheus

    server(ctx)
    r = http(ctx, "GET", "/metrics")
    if r.status != 200:
        raise CheckFailed("GET /metrics did not answer 200", got=r.short(),
                          hint="add a /metrics route returning Prometheus text")
    before = parse_prometheus(r.body.decode("utf-8", "replace"))
    if not before:
        raise CheckFailed("/metrics has no samples in Prometheus text format",
                          got=r.body[:200].decode("utf-8", "replace"), hint="lines like `name{label=\"x\"} 42`")
    post(ctx, {"prompt": PROMPT, "max_new_tokens": 2})
    after = parse_prometheus(http(ctx, "GET", "/metrics").body.decode("utf-8", "replace"))
    names = " ".join(after)
    missing = []
    if "process_resident_memory_bytes" not in after or after["process_resident_memory_bytes"] < 1e6:
        missing.append("process_resident_memory_bytes (the process's RSS, from psutil)")
    grew = [k for k in after if "request" in k and after[k] > before.get(k, 0)]
    if not grew:
        missing.append("a request counter (a name with 'request') that grows with each /generate")
    if not any(w in names for w in ("latency", "seconds", "duration")):
        missing.append("a latency metric (a name with 'latency', 'seconds' or 'duration')")
    if "token" not in names:
        missing.append("a token counter (a name with 'token')")
    if missing:
        raise CheckFailed("/metrics lacks: " + "; ".join(missing), hint="see README.md, /metrics")
    ctx.metrics["rss_bytes"] = int(after["process_resident_memory_bytes"])
    return f"{len(after)} samples; RSS {after['process_resident_memory_bytes'] / 2**20:.0f} MiB; {grew[0]} grew"
