"""What the serving-api criteria drive the learner's app with: HTTP helpers, the model it is
given, and the model's own answers (greedy continuations, token counts, sampling odds).

The model the app is given is a judge model made from the tiny random Llama (SmolLM2's
tokenizer): weights redrawn large enough that every prompt gets its own continuation and EOS
comes early for some prompts. SmolLM2 itself often loops on one phrase and rarely ends early,
so sharing state or miscounting tokens would hide; it also loads and generates in milliseconds.
`z2v lab run serving-api` measures the app with SmolLM2.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from zero2vllm.labs.framework import CheckFailed


TIMEOUT_S = 60.0


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
    url = server(ctx)["url"] + path
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


def ok_json(reply: Reply, what: str) -> dict:
    data = reply.json()
    if reply.status != 200 or not isinstance(data, dict):
        raise CheckFailed(f"{what} did not get a 200 JSON answer", got=reply.short())
    return data


def server(ctx):
    if "url" not in ctx.state:
        raise CheckFailed("not run: the app did not start (see `app starts and answers /health`)")
    return ctx.state


# -- the model ----------------------------------------------------------------------------------
def _judge_model_dir(ctx) -> Path:
    """The tiny random Llama with large redrawn weights and a louder EOS (see the docstring),
    made once beside the other models (a temp dir, then an atomic rename)."""
    import os
    import shutil
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM

    from zero2vllm.models import ensure_tiny_model_dir, model_cache_dir

    target = model_cache_dir() / JUDGE
    if (target / "config.json").exists():
        return target
    tiny = ensure_tiny_model_dir()
    tmp = Path(tempfile.mkdtemp(prefix=JUDGE + ".", dir=model_cache_dir()))
    model = AutoModelForCausalLM.from_pretrained(str(tiny))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        model.get_input_embeddings().weight[model.config.eos_token_id] *= 2.5  # tied: EOS's logit
    model.save_pretrained(tmp)
    for f in tiny.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template", "generation_config")):
            shutil.copy(f, tmp / f.name)
    try:
        os.replace(tmp, target)
    except OSError:  # another check made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


JUDGE = "serving-judge-v1"  # a new name when the recipe above changes


def model_dir(ctx) -> Path:
    if "model_dir" not in ctx.state:
        ctx.state["model_dir"] = _judge_model_dir(ctx)
    return ctx.state["model_dir"]


def reference(ctx):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if "ref" not in ctx.state:
        folder = str(model_dir(ctx))
        ctx.state["ref"] = (AutoModelForCausalLM.from_pretrained(folder).eval(),
                            AutoTokenizer.from_pretrained(folder))
    return ctx.state["ref"]


LONGEST = 16  # no criterion asks for more new tokens; one greedy run per prompt serves all


def _greedy(ctx, prompt: str):
    """Prompt ids, the greedy continuation's ids (up to LONGEST) and the logits that chose them."""
    import torch

    key = ("greedy", prompt)
    if key not in ctx.state:
        model, tok = reference(ctx)
        ids = tok(prompt, return_tensors="pt").input_ids
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=LONGEST,
                                 do_sample=False, pad_token_id=tok.eos_token_id)
            logits = model(out).logits[0, ids.shape[1] - 1:-1].float()
        ctx.state[key] = (ids, out[0, ids.shape[1]:], logits)
    return ctx.state[key]


def expected(ctx, prompt: str, max_new: int):
    """The model's own greedy continuation: (text of the new tokens, prompt tokens, new tokens
    including an EOS, whether it ended on EOS). Greedy decoding of n tokens is the first n of a
    longer one, so one run per prompt answers every length."""
    model, tok = reference(ctx)
    ids, new, _ = _greedy(ctx, prompt)
    new = new[:max_new]
    eos = len(new) > 0 and int(new[-1]) == model.config.eos_token_id
    return tok.decode(new, skip_special_tokens=True), ids.shape[1], len(new), eos


def greedy_odds(ctx, prompt: str, max_new: int, temperature: float) -> float:
    """The chance that sampling at `temperature` reproduces the greedy continuation exactly."""
    import torch

    _, new, logits = _greedy(ctx, prompt)
    new, logits = new[:max_new], logits[:max_new]
    probs = torch.softmax(logits / temperature, dim=-1)
    return probs.gather(-1, new[:, None]).prod().item()
