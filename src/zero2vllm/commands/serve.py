"""`z2v serve ...`: run a model behind an HTTP API.

`serve` is a group whose subcommands live beside the code they serve: `serve naive` here,
`serve engine` in commands/engine.py, `serve dashboard` in commands/dashboard.py. The table below
names each one's module, so `z2v serve naive` imports none of the others.
"""

from __future__ import annotations

import click

from zero2vllm.commands._app import LazyGroup, Z2VError

SUBCOMMANDS = {"naive": "serve:SERVE_COMMANDS", "engine": "engine:SERVE_COMMANDS",
               "dashboard": "dashboard:SERVE_COMMANDS", "group": "group_server:SERVE_COMMANDS"}


@click.group(cls=LazyGroup, table=SUBCOMMANDS)
def serve() -> None:
    """Serve over HTTP: naive (the week-2 Flask baseline), engine (the mini vLLM), dashboard, group."""


@click.command("naive")
@click.option("--model", "model_spec", default="smollm2", show_default=True,
              help="smollm2 | a Hugging Face model folder | a cached HF id")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None,
              help="Weights dtype (default: the model's own).")
@click.option("--max-model-len", type=click.IntRange(2), default=None,
              help="Context limit (prompt + new tokens); default: the model's.")
@click.option("--max-new-tokens-limit", type=click.IntRange(1), default=1024, show_default=True,
              help="Largest max_new_tokens a request may ask for.")
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help="torch CPU threads (default: measured for this machine, and printed).")
@click.option("--access-log", is_flag=True, help="Print one line per request.")
@click.option("--api-key", default=None, help="Require Authorization: Bearer KEY on /generate (as vLLM).")
def serve_naive(model_spec, host, port, device, dtype, max_model_len, max_new_tokens_limit, threads,
                access_log, api_key):
    """The naive API: Flask + transformers.generate, one request at a time.

    POST /generate {"prompt": "...", "max_new_tokens": 64, "temperature": 0}, GET /health,
    GET /metrics (Prometheus). Measure it with `z2v bench http://HOST:PORT --api generate`.
    """
    import torch

    from zero2vllm.models import ModelError
    from zero2vllm.instruments.naive import create_app, load_server

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    from zero2vllm.instruments.naive import pick_threads

    choice = pick_threads(threads, device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise Z2VError(f"--device {device}: no CUDA GPU here; use --device cpu")
    try:
        server = load_server(model_spec, device=device, dtype=dtype, max_model_len=max_model_len,
                             max_new_tokens_limit=max_new_tokens_limit)
    except ModelError as exc:
        raise Z2VError(str(exc)) from None
    app = create_app(server, api_key=api_key)
    from zero2vllm.instruments.naive import make_http_server

    try:
        httpd = make_http_server(app, host, port, access_log=access_log)
    except OSError as exc:
        raise Z2VError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; try another --port") from None
    click.echo(f"naive API: {server.name} on {server.device}, context {server.max_model_len} tokens, "
               f"one request at a time; {choice.describe()}", err=True)
    from zero2vllm.instruments.cputhreads import busy_note

    if busy_note():
        click.echo(busy_note(), err=True)
    click.echo(f"listening on http://{host}:{httpd.server_port}  (POST /generate, GET /health, "
               f"GET /metrics; Ctrl-C to stop)", err=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


COMMANDS = {"serve": serve}
SERVE_COMMANDS = {"naive": serve_naive}  # z2v serve naive
