"""The vllm lab's criteria: the learner's vLLM serves, speaks the OpenAI API correctly, and has
been measured against their naive API with `z2v compare`.

There is no learner code to import: the checks talk to the running server. Its URL is, in
order: the first line of PATH/url.txt (for a vLLM started some other way: Docker, your own
command), the server `z2v vllm serve` is running, else http://127.0.0.1:8001.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from zero2vllm.labs.framework import CheckFailed, criterion

DEFAULT_URL = "http://127.0.0.1:8001"
PROMPT = "The capital of France is"
MAX_TOKENS = 8
START_HINT = "start it with `z2v vllm serve --eager` (or write its URL in url.txt in the lab folder)"


def find_server(path: Path) -> tuple[str, str]:
    """(url, where the URL came from)."""
    url_file = (path if path.is_dir() else path.parent) / "url.txt"
    if url_file.is_file():
        for line in url_file.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                return line.rstrip("/"), str(url_file)
    try:
        from zero2vllm.realvllm.serve import read_state

        state = read_state()
    except Exception:
        state = None
    if state and state.get("url"):
        return state["url"].rstrip("/"), "the server `z2v vllm serve` started"
    return DEFAULT_URL, "the default URL"


def setup(ctx) -> None:
    ctx.state["url"], ctx.state["source"] = find_server(ctx.path)
    ctx.metrics["url"] = ctx.state["url"]


def http(method: str, url: str, body: dict | None = None, timeout: float = 120.0):
    """(status, parsed JSON or text); (None, reason) when nothing answers."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    except (OSError, urllib.error.URLError) as exc:
        return None, str(getattr(exc, "reason", exc))
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def completion(ctx, **extra) -> dict:
    status, data = http("POST", ctx.state["url"] + "/v1/completions",
                        {"model": ctx.state.get("model"), "prompt": PROMPT, "max_tokens": MAX_TOKENS,
                         "temperature": 0, **extra})
    if status != 200:
        raise CheckFailed(f"POST /v1/completions answered {status}", got=str(data)[:300])
    return data


def _need_server(ctx) -> None:
    if not ctx.state.get("model"):
        raise CheckFailed("not run: the server did not answer (see 'vLLM serves')")


@criterion("vLLM serves")
def serves(ctx):
    url = ctx.state["url"]
    status, data = http("GET", url + "/health", timeout=10)
    if status is None:
        if ctx.state["source"].startswith("the server"):
            raise CheckFailed(f"vLLM is still starting at {url} (nothing answers yet)",
                              hint="wait until `z2v vllm serve` prints 'vLLM is serving', then check again")
        raise CheckFailed(f"nothing answers at {url} (from {ctx.state['source']}): {data}",
                          hint=START_HINT)
    if status != 200:
        raise CheckFailed(f"{url}/health answered {status}: the server is not ready",
                          hint="wait for `z2v vllm serve` to print 'vLLM is serving', then check again")
    status, version = http("GET", url + "/version", timeout=10)
    if status != 200 or not isinstance(version, dict) or "version" not in version:
        _, models = http("GET", url + "/v1/models", timeout=10)
        if not isinstance(models, dict):
            raise CheckFailed(f"{url} answers /health but is not vLLM (no /version, no /v1/models); "
                              "is that your naive API?", hint=START_HINT)
        raise CheckFailed(f"{url} speaks the OpenAI API but has no /version: not vLLM", hint=START_HINT)
    status, models = http("GET", url + "/v1/models", timeout=10)
    if status != 200 or not isinstance(models, dict) or not models.get("data"):
        raise CheckFailed("GET /v1/models lists no model", got=str(models)[:300])
    model = models["data"][0]
    ctx.state["model"], ctx.state["root"] = model["id"], model.get("root")
    ctx.metrics.update(vllm_version=version["version"], model=model["id"],
                       max_model_len=model.get("max_model_len"))
    return f"vLLM {version['version']} at {url} serving {model['id']} (from {ctx.state['source']})"


@criterion("completions answer correctly")
def completions(ctx):
    _need_server(ctx)
    data = completion(ctx)
    choices = data.get("choices") or []
    if data.get("object") != "text_completion" or not choices:
        raise CheckFailed("the response is not an OpenAI text_completion with choices",
                          got=json.dumps(data)[:300])
    text = choices[0].get("text")
    if not isinstance(text, str) or not text:
        raise CheckFailed("choices[0].text is empty", got=repr(text))
    usage = data.get("usage") or {}
    n_out, n_in = usage.get("completion_tokens"), usage.get("prompt_tokens")
    finish = choices[0].get("finish_reason")
    if finish not in ("length", "stop"):
        raise CheckFailed("finish_reason must be length or stop", got=repr(finish))
    if not isinstance(n_out, int) or n_out > MAX_TOKENS or (finish == "length" and n_out != MAX_TOKENS):
        raise CheckFailed(f"usage.completion_tokens is wrong for max_tokens={MAX_TOKENS}",
                          expected=f"{MAX_TOKENS} (finish_reason {finish})", got=repr(n_out))
    if usage.get("total_tokens") != (n_in or 0) + n_out:
        raise CheckFailed("usage.total_tokens != prompt_tokens + completion_tokens", got=str(usage))
    expected_in = _count_prompt_tokens(ctx)
    if expected_in is not None and n_in != expected_in:
        raise CheckFailed("usage.prompt_tokens disagrees with the model's tokenizer",
                          expected=str(expected_in), got=repr(n_in))
    again = completion(ctx)
    if (again.get("choices") or [{}])[0].get("text") != text:
        raise CheckFailed("two identical greedy requests (temperature 0) gave different text",
                          expected=repr(text), got=repr(again["choices"][0].get("text")))
    ctx.state["text"] = text
    ctx.metrics["greedy_text"] = text
    return f"{PROMPT!r} -> {text!r} ({n_in} prompt + {n_out} completion tokens, greedy is repeatable)"


def _tokenizer(ctx):
    root = ctx.state.get("root")
    if not root or not Path(root).is_dir():
        return None
    if "tokenizer" not in ctx.state:
        from transformers import AutoTokenizer

        ctx.state["tokenizer"] = AutoTokenizer.from_pretrained(root)
    return ctx.state["tokenizer"]


def _count_prompt_tokens(ctx) -> int | None:
    tok = _tokenizer(ctx)
    return None if tok is None else len(tok(PROMPT)["input_ids"])


@criterion("streaming works")
def streaming(ctx):
    _need_server(ctx)
    body = {"model": ctx.state["model"], "prompt": PROMPT, "max_tokens": MAX_TOKENS,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    req = urllib.request.Request(ctx.state["url"] + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    parts, usage, done, chunks = [], None, False, 0
    with urllib.request.urlopen(req, timeout=120) as resp:
        if resp.headers.get_content_type() != "text/event-stream":
            raise CheckFailed("a streaming request did not get Server-Sent Events",
                              expected="text/event-stream", got=resp.headers.get_content_type())
        for raw in resp:
            line = raw.decode("utf-8").strip()
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                done = True
                break
            event = json.loads(payload)
            if event.get("choices"):
                chunks += 1
                parts.append(event["choices"][0].get("text") or "")
            if event.get("usage"):
                usage = event["usage"]
    if not done:
        raise CheckFailed("the stream did not end with data: [DONE]")
    text = "".join(parts)
    if "text" in ctx.state and text != ctx.state["text"]:
        raise CheckFailed("the streamed text differs from the non-streamed greedy text",
                          expected=repr(ctx.state["text"]), got=repr(text))
    if not usage or usage.get("completion_tokens") != MAX_TOKENS:
        raise CheckFailed("stream_options.include_usage gave no usage chunk with the token count",
                          expected=f"completion_tokens {MAX_TOKENS}", got=str(usage))
    return f"{chunks} chunks, then [DONE]; same text as without streaming"


@criterion("chat completions work")
def chat(ctx):
    _need_server(ctx)
    status, data = http("POST", ctx.state["url"] + "/v1/chat/completions", {
        "model": ctx.state["model"], "max_tokens": 16, "temperature": 0,
        "messages": [{"role": "user", "content": "What is the capital of France?"}]})
    if status != 200:
        raise CheckFailed(f"POST /v1/chat/completions answered {status}", got=str(data)[:300],
                          hint="a model without a chat template cannot chat; SmolLM2-Instruct has one")
    message = ((data.get("choices") or [{}])[0]).get("message") or {}
    if message.get("role") != "assistant" or not (message.get("content") or "").strip():
        raise CheckFailed("choices[0].message is not an assistant reply", got=str(message)[:300])
    ctx.metrics["chat_reply"] = message["content"]
    return f"assistant: {message['content'].strip()[:80]!r}"


@criterion("greedy output matches transformers")
def matches_transformers(ctx):
    """The same weights through plain transformers must give the same greedy tokens: vLLM's
    paged attention and batching change how the work is done, not what comes out."""
    _need_server(ctx)
    root, text = ctx.state.get("root"), ctx.state.get("text")
    if not text:
        raise CheckFailed("not run: no greedy completion to compare (see 'completions answer correctly')")
    if not root or not Path(root).is_dir():
        return f"skipped: the served model {root!r} is not a local folder"
    size = sum(f.stat().st_size for f in Path(root).glob("*.safetensors"))
    if size > 3 * 2**30:
        return f"skipped: {size / 2**30:.1f} GB of weights is too big to load beside vLLM here"
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    tok = _tokenizer(ctx)
    model = AutoModelForCausalLM.from_pretrained(root, dtype=torch.float32).eval()
    ids = tok(PROMPT, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_TOKENS,
                             do_sample=False, pad_token_id=tok.eos_token_id)
    hf_text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    if hf_text.strip() != text.strip():
        raise CheckFailed("vLLM's greedy text differs from transformers' for the same weights",
                          expected=repr(hf_text), got=repr(text),
                          hint="serve in float32 (--dtype float32) and check the model folder")
    return f"both say {text!r}"


@criterion("comparison with your naive API recorded")
def comparison(ctx):
    # The parent (`z2v check`) read these from the store it was given (`--db`); see
    # zero2vllm.tracker.evidence.check_inputs. This process never opens the store.
    runs = ctx.inputs.get("runs", {}).get("compare", [])
    usable = []
    for run in runs:
        targets = {t["name"]: t for t in run["metrics"].get("targets", [])}
        naive, vllm = targets.get("naive"), targets.get("vllm")
        if naive and vllm and not naive.get("error") and not vllm.get("error") \
                and run["metrics"].get("speedup_at_max") is not None:
            usable.append(run)
    if not usable:
        detail = f"{len(runs)} comparison(s) recorded, none with both targets measured" if runs \
            else "no comparison recorded yet"
        raise CheckFailed(detail, hint="run `z2v compare` (it starts the naive API and vLLM itself; "
                                       "about 10 minutes on 2 cores)")
    last = usable[-1]
    m = last["metrics"]
    ctx.metrics.update(comparison=m["table"], comparison_text=m["table_text"],
                       comparison_at=last["at"], speedup_at_max=m["speedup_at_max"],
                       comparison_artifacts=last["artifacts"])
    top = m["config"]["concurrency"][-1]
    return (f"recorded {last['at'][:16].replace('T', ' ')}: vLLM {m['speedup_at_max']:.1f}x the naive "
            f"API's output throughput at concurrency {top or 'inf'}\n" + m["table_text"])
