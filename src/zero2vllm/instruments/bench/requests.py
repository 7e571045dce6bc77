"""What the benchmark sends: prompts, one request per API (naive /generate, OpenAI streaming), and
what each request observed (`RequestResult`)."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


APIS = ("generate", "openai")

# Common English words that are one token each in GPT-2/Llama/SmolLM2-style BPE vocabularies,
# so a text prompt of N words is about N tokens (the server's own count is what we report).


# Common English words that are one token each in GPT-2/Llama/SmolLM2-style BPE vocabularies,
# so a text prompt of N words is about N tokens (the server's own count is what we report).
WORDS = (
    "the of and to in is was for that with as on by at from his her they this which be had not "
    "are but were have one all an their there been has when who will more no if out so said what "
    "up its about into than them can only other new some could time these two may then do first "
    "any my now such like our over man me even most made after also did many before must through "
    "back years where much your way well down should because each just those people how too little "
    "state good very make world still own see men work long get here between both life being under "
    "never day same another know while last might us great old year off come since against go came "
    "right used take three"
).split()


class BenchError(Exception):
    """Cannot run the benchmark (server not reachable, bad arguments); one line says why."""


@dataclass
class RequestResult:
    success: bool = False
    error: str = ""
    start_time: float = 0.0  # perf_counter when the request was sent
    latency: float = 0.0  # E2EL, seconds
    ttft: float | None = None  # None: not observable (non-streaming API)
    itl: list[float] = field(default_factory=list)
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    text: str = ""


@dataclass
class BenchRequest:
    prompt: str | list[int]
    prompt_len: int  # the client's estimate; the server's count replaces it when given
    output_len: int


# -- building the requests ------------------------------------------------------------------------


# -- building the requests ------------------------------------------------------------------------
def make_requests(
    n: int,
    *,
    input_len: int = 128,
    output_len: int = 128,
    prompts: list[str] | None = None,
    prompt_format: str = "text",
    seed: int = 0,
) -> list[BenchRequest]:
    """N requests: the given prompts cycled, or random prompts of `input_len` words / token ids."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if prompts:
            p = prompts[i % len(prompts)]
            out.append(BenchRequest(p, max(1, len(p.split())), output_len))
        elif prompt_format == "ids":
            ids = [rng.randrange(100, 10_000) for _ in range(input_len)]
            out.append(BenchRequest(ids, input_len, output_len))
        else:
            words = [rng.choice(WORDS) for _ in range(input_len)]
            out.append(BenchRequest(" ".join(words), input_len, output_len))
    return out


def load_prompts(path: Path) -> list[str]:
    """One prompt per line (.txt), or JSON lines with a "prompt" field (.jsonl)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BenchError(f"--prompts {path}: {exc.strerror or exc}") from None
    prompts = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                prompt = json.loads(line).get("prompt")
            except (ValueError, AttributeError):
                raise BenchError(f"--prompts {path}:{n}: not a JSON object with a \"prompt\"") from None
            if not isinstance(prompt, str) or not prompt:
                raise BenchError(f"--prompts {path}:{n}: \"prompt\" must be a non-empty string")
            prompts.append(prompt)
        else:
            prompts.append(line)
    if not prompts:
        raise BenchError(f"--prompts {path}: no prompts in the file")
    return prompts


# -- the request functions --------------------------------------------------------------------------


# -- the request functions --------------------------------------------------------------------------
def _first_int(*values: Any) -> int | None:
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


async def request_generate(client, url: str, req: BenchRequest, extra: dict) -> RequestResult:
    """POST /generate, non-streaming: E2EL is the only latency a client can see."""
    if isinstance(req.prompt, list):
        payload: dict[str, Any] = {"prompt_token_ids": req.prompt}
    else:
        payload = {"prompt": req.prompt}
    payload.update(max_new_tokens=req.output_len, temperature=0.0, ignore_eos=True, **extra)
    out = RequestResult(prompt_tokens=req.prompt_len)
    st = time.perf_counter()
    out.start_time = st
    try:
        resp = await client.post(url, json=payload)
        body = resp.content
        out.latency = time.perf_counter() - st
        if resp.status_code != 200:
            out.error = f"HTTP {resp.status_code}: {body[:200].decode('utf-8', 'replace')}"
            return out
        data = json.loads(body)
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        out.output_tokens = _first_int(data.get("completion_tokens"), usage.get("completion_tokens"),
                                       data.get("generated_tokens"), data.get("tokens_generated"))
        if out.output_tokens is None and isinstance(data.get("token_ids"), list):
            out.output_tokens = len(data["token_ids"])
        pt = _first_int(data.get("prompt_tokens"), usage.get("prompt_tokens"))
        if pt is not None:
            out.prompt_tokens = pt
        out.text = str(data.get("text", ""))[:200]
        out.success = True
    except Exception as exc:  # connection refused, reset, timeout, bad JSON: a failed request
        out.latency = time.perf_counter() - st
        out.error = f"{type(exc).__name__}: {exc}"
    return out


async def request_openai(client, url: str, req: BenchRequest, extra: dict) -> RequestResult:
    """POST /v1/completions with stream=true: vLLM's async_request_openai_completions, on our asyncio client."""
    payload = {
        "prompt": req.prompt,
        "max_tokens": req.output_len,
        "temperature": 0.0,
        "repetition_penalty": 1.0,
        "ignore_eos": True,  # fixed output lengths, as vllm bench serve --ignore-eos
        "stream": True,
        "stream_options": {"include_usage": True},
        **extra,
    }
    out = RequestResult(prompt_tokens=req.prompt_len)
    st = time.perf_counter()
    out.start_time = st
    most_recent = st
    first = False
    text_parts: list[str] = []
    try:
        async with client.stream("POST", url, json=payload) as resp:
            if resp.status_code != 200:
                body = await resp.aread()
                out.latency = time.perf_counter() - st
                out.error = f"HTTP {resp.status_code}: {body[:200].decode('utf-8', 'replace')}"
                return out
            async for line in resp.aiter_lines():
                line = line.strip()
                if not line or line.startswith(":"):  # SSE keep-alive comments
                    continue
                chunk = line.removeprefix("data:").strip()
                if chunk == "[DONE]":
                    continue
                data = json.loads(chunk)
                if choices := data.get("choices"):
                    ts = time.perf_counter()
                    if not first:
                        first = True
                        out.ttft = ts - st
                    else:
                        out.itl.append(ts - most_recent)
                    most_recent = ts
                    text_parts.append(choices[0].get("text") or "")
                elif usage := data.get("usage"):
                    out.output_tokens = usage.get("completion_tokens")
                    if usage.get("prompt_tokens") is not None:
                        out.prompt_tokens = usage["prompt_tokens"]
        out.latency = most_recent - st
        out.text = "".join(text_parts)[:200]
        if first:
            out.success = True
        else:
            out.error = "the stream carried no token chunk (no TTFT)"
    except Exception as exc:
        out.latency = time.perf_counter() - st
        out.error = f"{type(exc).__name__}: {exc}"
    return out


# -- statistics -------------------------------------------------------------------------------------


# -- one run ------------------------------------------------------------------------------------------
def endpoint_url(url: str, api: str) -> tuple[str, str]:
    """(base URL, endpoint URL) from what the user typed: a base or the endpoint itself."""
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise BenchError(f"URL {url!r}: give it with http://, e.g. http://127.0.0.1:8000")
    suffix = "/generate" if api == "generate" else "/v1/completions"
    for known in ("/generate", "/v1/completions"):
        if url.endswith(known):
            return url[: -len(known)], url
    return url, url + suffix
