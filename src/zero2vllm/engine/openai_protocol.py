"""The OpenAI /v1/completions request, checked field by field, and vLLM's error shape.

Everything a client sends is checked here before the engine sees it: the JSON itself (nesting
depth, NaN and Infinity, invalid UTF-8), each field's type and range, and the prompt's text
(a lone surrogate cannot be tokenized). A bad field is a `BadRequest` naming it, answered 400.
"""

from __future__ import annotations

import json

from .sequence import SamplingParams

ERROR_TYPES = {400: "BadRequestError", 401: "AuthenticationError", 404: "NotFoundError",
               405: "MethodNotAllowedError", 408: "RequestTimeoutError", 413: "PayloadTooLargeError",
               415: "UnsupportedMediaTypeError", 431: "HeadersTooLargeError", 500: "InternalServerError"}
UNSUPPORTED = {"n": 1, "best_of": 1, "echo": False, "logprobs": None, "suffix": None, "top_p": 1.0, "top_k": -1,
               "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "seed": None,
               "logit_bias": None}


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, param: str | None = None):
        super().__init__(message)
        self.status, self.param = status, param


def error_body(status: int, message: str, param: str | None = None) -> bytes:
    kind = ERROR_TYPES.get(status, "BadRequestError" if status < 500 else "InternalServerError")
    return json.dumps({"error": {"message": message, "type": kind, "param": param, "code": status}}).encode()


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def load_json(body: bytes):
    try:
        return json.loads(body or b"null", parse_constant=_no_constant)
    except RecursionError:
        raise BadRequest("the JSON body is nested too deeply") from None
    except ValueError as exc:  # also bad UTF-8 and over-long integers
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


def parse_completion_request(body: bytes, model_name: str):
    """Validate an OpenAI /v1/completions body -> (prompt, SamplingParams, stream, include_usage)."""
    data = load_json(body)
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    if data.get("model") not in (None, model_name):
        raise BadRequest(f"The model `{data['model']}` does not exist; this server has `{model_name}`", 404, "model")
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    is_ids = isinstance(prompt, list) and prompt and all(type(t) is int for t in prompt)
    if not (isinstance(prompt, str) and prompt) and not is_ids:
        raise BadRequest("`prompt` must be a non-empty string or a list of token ids (one prompt per request)",
                         param="prompt")
    if isinstance(prompt, str):
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest("`prompt` is not valid Unicode (it holds a lone surrogate)", param="prompt") from None
    for key, default in UNSUPPORTED.items():
        value = data.get(key)
        same = value == default and (type(value) is bool) == (type(default) is bool)
        if value is not None and not same and not (key == "top_k" and value == 0):
            raise BadRequest(f"`{key}` is not supported by this engine (leave it out or use {default})", param=key)
    if data.get("stop") not in (None, "", []):
        raise BadRequest("`stop` strings are not supported; use stop_token_ids", param="stop")

    def typed(key, kind, default):
        value = data.get(key, default)
        value = default if value is None else value
        if kind is float and type(value) is int:
            value = float(value)
        if type(value) is not kind:
            raise BadRequest(f"`{key}` must be {kind.__name__}", param=key)
        return value

    stop_ids = data.get("stop_token_ids") or []
    if not isinstance(stop_ids, list) or not all(type(t) is int for t in stop_ids):
        raise BadRequest("`stop_token_ids` must be a list of token ids", param="stop_token_ids")
    options = data.get("stream_options") or {}
    if not isinstance(options, dict):
        raise BadRequest("`stream_options` must be an object", param="stream_options")
    try:
        params = SamplingParams(temperature=typed("temperature", float, 1.0), max_tokens=typed("max_tokens", int, 16),
                                min_tokens=typed("min_tokens", int, 0), ignore_eos=typed("ignore_eos", bool, False),
                                stop_token_ids=tuple(stop_ids))
    except ValueError as exc:  # BadParam names the field
        raise BadRequest(str(exc), param=getattr(exc, "param", None)) from None
    return prompt, params, typed("stream", bool, False), bool(options.get("include_usage"))


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
