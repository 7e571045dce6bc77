"""The serving-api lab's criteria: start the learner's app, drive it over HTTP, check it.

The app is built with the learner's `create_app(model_dir)` and served by a threaded werkzeug
server on a free port of 127.0.0.1 in this (child) process; every request has a timeout, so a
hang is a failed criterion, never a stuck check. Answers are compared with the model's own
(greedy continuations, the tokenizer's counts, the odds of sampling), never with a fixed text.
"""

from __future__ import annotations

import json
import random
import threading
import time

from zero2vllm.labs.framework import CheckFailed, CheckWarning, criterion
from zero2vllm.labs.serving_api.probe import (
    TIMEOUT_S, expected, greedy_odds, http, model_dir, ok_json, post, reference,
    server,
)

PROMPT = "The capital of France is"
STARTS = "app starts and answers /health"
GREEDY = "POST /generate returns the greedy continuation"
# different lengths and tokenizations; one of them should end on EOS early (see token counts)
PROMPTS = ["Once upon a time", "def add(a, b):", "Hello", "1, 2, 3, 4,", "naïve café: 3.14159 isn't π!",
           "Q: why?\nA:", "<|im_start|>user\nHi<|im_end|>\n"]


def setup(ctx) -> None:
    import torch

    # one thread: the judge model is 32 wide, so a second only spins against other load
    torch.set_num_threads(1)


@criterion(STARTS)
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


@criterion(GREEDY, needs=(STARTS,))
def generate(ctx):
    server(ctx)
    want, n_prompt, n_new, _ = expected(ctx, PROMPT, 8)
    t0 = time.perf_counter()
    r = post(ctx, {"prompt": PROMPT, "max_new_tokens": 8, "temperature": 0})
    client_ms = (time.perf_counter() - t0) * 1e3
    data = ok_json(r, "a valid request")
    for key, kind in (("text", str), ("prompt_tokens", int), ("completion_tokens", int),
                      ("latency_ms", (int, float))):
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise CheckFailed(f"the answer lacks {key!r} ({kind if isinstance(kind, type) else 'a number'})",
                              got=json.dumps(data)[:200],
                              hint='answer {"text", "prompt_tokens", "completion_tokens", "latency_ms"}')
    text = data["text"]
    if text.strip() != want.strip():  # stripping the leading space is a choice, not a mistake
        if text.startswith(PROMPT):
            raise CheckFailed("the text repeats the prompt", got=repr(text[:120]),
                              hint="decode only the new tokens: out[0, prompt_len:]")
        raise CheckFailed("the text is not the model's greedy continuation",
                          expected=repr(want), got=repr(text[:120]),
                          hint="temperature 0 means do_sample=False; no chat template; "
                               "decode with skip_special_tokens=True")
    if not 0 < data["latency_ms"] <= client_ms * 1.5 + 5 or data["latency_ms"] < client_ms / 50:
        raise CheckFailed("latency_ms is not the request's time in milliseconds",
                          expected=f"about the {client_ms:.0f} ms the request took", got=str(data["latency_ms"]),
                          hint="(time.perf_counter() - started) * 1000")
    again = ok_json(post(ctx, {"prompt": PROMPT, "max_new_tokens": 8}), "a request without temperature")
    if str(again.get("text")).strip() != text.strip():
        raise CheckFailed("the default temperature is not greedy: the same request gave another text",
                          hint="temperature defaults to 0 (greedy)")
    ctx.metrics["latency_ms_8_tokens"] = data["latency_ms"]
    return f"{PROMPT!r} -> {text!r} ({n_new} tokens, {data['latency_ms']:.0f} ms)"


@criterion("token counts are the tokenizer's and max_new_tokens is honoured", needs=(GREEDY,))
def token_counts(ctx):
    early = None
    for prompt in PROMPTS:
        for max_new in (1, 12):
            want, n_prompt, n_new, eos = expected(ctx, prompt, max_new)
            data = ok_json(post(ctx, {"prompt": prompt, "max_new_tokens": max_new}), "a valid request")
            got = (data.get("text"), data.get("prompt_tokens"), data.get("completion_tokens"))
            where = f"prompt {prompt!r}, max_new_tokens {max_new}"
            if got[1] != n_prompt:
                raise CheckFailed(f"prompt_tokens is not the tokenizer's count ({where})",
                                  expected=str(n_prompt), got=str(got[1]),
                                  hint="len(tokenizer(prompt).input_ids): words and characters are not tokens")
            if str(got[0]).strip() != want.strip() or got[2] != n_new:
                if eos and n_new < max_new:
                    hint = ("the model ended on EOS after this many tokens (EOS counted, as model.generate "
                            "returns it); count the tokens generated, not max_new_tokens or the text "
                            "re-tokenized")
                else:
                    hint = "pass max_new_tokens to model.generate; count the tokens it returned"
                raise CheckFailed(f"the answer is not {n_new} greedy new tokens ({where})",
                                  expected=f"completion_tokens {n_new}, text {want!r}",
                                  got=f"completion_tokens {got[2]}, text {str(got[0])[:80]!r}", hint=hint)
            if eos and 1 < n_new < max_new:
                early = early or where
    if early is None:
        raise CheckWarning("could not check: no test prompt ends on EOS early with this model; the counts "
                           "were right without one")
    return f"{2 * len(PROMPTS)} requests: prompt_tokens and completion_tokens exact (early EOS: {early})"


@criterion("temperature changes the output as it should", needs=(GREEDY,))
def temperature(ctx):
    prompt, max_new = "Once upon a time", 8
    want = expected(ctx, prompt, max_new)[0]
    hot = next((t for t in (1.0, 1.5, 2.0) if greedy_odds(ctx, prompt, max_new, t) < 0.02), None)
    cold = next((t for t in (0.1, 0.03, 0.01, 0.003, 0.001) if greedy_odds(ctx, prompt, max_new, t) > 0.999),
                None)
    if hot is None or cold is None:
        raise CheckWarning("could not check: the model's odds at every temperature tried are too extreme")
    texts = []
    for _ in range(5):
        r = post(ctx, {"prompt": prompt, "max_new_tokens": max_new, "temperature": hot})
        texts.append(ok_json(r, f"a request with temperature {hot}").get("text"))
    if len(set(texts)) == 1:
        raise CheckFailed(f"temperature {hot} is accepted but ignored: 5 requests gave the same text "
                          f"(sampling makes that nearly impossible)", got=repr(texts[0])[:120],
                          hint="temperature > 0: model.generate(do_sample=True, temperature=temperature)")
    for _ in range(3):
        r = post(ctx, {"prompt": prompt, "max_new_tokens": max_new, "temperature": cold})
        got = ok_json(r, f"a request with temperature {cold}").get("text")
        if str(got).strip() != want.strip():
            raise CheckFailed(f"temperature {cold} does not sharpen sampling: the answer is not the greedy "
                              "one, which it should be with odds > 99.9%", expected=repr(want), got=repr(got),
                              hint="pass temperature to model.generate, not only do_sample=True")
    return f"temperature {hot}: {len(set(texts))} different texts in 5; temperature {cold}: greedy"


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
        ("max_new_tokens 257", b'{"prompt": "hi", "max_new_tokens": 257}'),
        ("max_new_tokens 100000", b'{"prompt": "hi", "max_new_tokens": 100000}'),
        ("temperature a string", b'{"prompt": "hi", "temperature": "hot"}'),
        ("temperature negative", b'{"prompt": "hi", "temperature": -1}'),
        ("temperature NaN", b'{"prompt": "hi", "temperature": NaN}'),
        (f"a prompt longer than the context ({context} tokens)",
         json.dumps({"prompt": "hello " * (context + 50), "max_new_tokens": 4}).encode()),
    ]


@criterion("bad requests get a 400 with a JSON error", needs=(STARTS,))
def errors(ctx):
    server(ctx)
    config = reference(ctx)[0].config
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


@criterion("survives a fuzz run of malformed requests", needs=(STARTS,))
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


@criterion("concurrent requests each get their own answer", needs=(GREEDY,))
def concurrent(ctx):
    server(ctx)
    jobs = [(p, 4 + i % 5) for i, p in enumerate(PROMPTS[:6])] * 2
    wants = [expected(ctx, p, n) for p, n in jobs]
    replies: list = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def one(i):
        barrier.wait(TIMEOUT_S)
        try:
            replies[i] = post(ctx, {"prompt": jobs[i][0], "max_new_tokens": jobs[i][1]})
        except CheckFailed as exc:
            replies[i] = exc

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT_S * 2)
    for (prompt, n), want, r in zip(jobs, wants, replies):
        if isinstance(r, CheckFailed):
            raise r
        if r is None:
            raise CheckFailed(f"{len(jobs)} simultaneous requests: one got no answer", hint="a deadlock?")
        data = ok_json(r, f"one of {len(jobs)} simultaneous requests")
        got = (str(data.get("text")).strip(), data.get("prompt_tokens"), data.get("completion_tokens"))
        if got != (want[0].strip(), want[1], want[2]):
            others = [w for w in wants if (w[0].strip(), w[1], w[2]) == got and w is not want]
            raise CheckFailed(
                f"{len(jobs)} simultaneous requests with different prompts: {prompt!r} got "
                + ("another request's answer" if others else "a wrong answer"),
                expected=f"text {want[0]!r}, prompt_tokens {want[1]}, completion_tokens {want[2]}",
                got=f"text {str(got[0])[:80]!r}, prompt_tokens {got[1]}, completion_tokens {got[2]}",
                hint="keep each request's data in local variables, not shared state; guard "
                     "model.generate with a threading.Lock")
    return f"{len(jobs)} simultaneous requests, 6 prompts: each its own greedy answer and counts"


@criterion("GET /metrics speaks Prometheus", needs=(GREEDY,))
def metrics(ctx):
    from zero2vllm.instruments.metrics import parse_prometheus

    server(ctx)
    r = http(ctx, "GET", "/metrics")
    if r.status != 200:
        raise CheckFailed("GET /metrics did not answer 200", got=r.short(),
                          hint="add a /metrics route returning Prometheus text")
    before = parse_prometheus(r.body.decode("utf-8", "replace"))
    if not before:
        raise CheckFailed("/metrics has no samples in Prometheus text format",
                          got=r.body[:200].decode("utf-8", "replace"), hint="lines like `name{label=\"x\"} 42`")
    answer = ok_json(post(ctx, {"prompt": PROMPT, "max_new_tokens": 5}), "a valid request")
    after = parse_prometheus(http(ctx, "GET", "/metrics").body.decode("utf-8", "replace"))
    names = " ".join(after)
    grew = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    missing = []
    if "process_resident_memory_bytes" not in after or after["process_resident_memory_bytes"] < 1e6:
        missing.append("process_resident_memory_bytes (the process's RSS, from psutil)")
    if not any("request" in k and d > 0 for k, d in grew.items()):
        missing.append("a request counter (a name with 'request') that grows with each /generate")
    if not any(w in names for w in ("latency", "seconds", "duration")):
        missing.append("a latency metric (a name with 'latency', 'seconds' or 'duration')")
    p, c = answer.get("prompt_tokens"), answer.get("completion_tokens")
    if not any("token" in k and d in (p, c, (p or 0) + (c or 0)) for k, d in grew.items()):
        missing.append(f"a token counter (a name with 'token') that grows by the request's tokens "
                       f"({p} prompt, {c} completion)")
    if missing:
        raise CheckFailed("/metrics lacks: " + "; ".join(missing), hint="see README.md, /metrics")
    ctx.metrics["rss_bytes"] = int(after["process_resident_memory_bytes"])
    return f"{len(after)} samples; RSS {after['process_resident_memory_bytes'] / 2**20:.0f} MiB"
