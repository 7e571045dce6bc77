"""`z2v serve ...`: run a model behind an HTTP API.

`serve` is a click group that other modules extend. To add `z2v serve engine` from your own
command module (say commands/engine.py):

    from zero2vllm.commands.serve import serve

    @click.command("engine")
    def engine_cmd(...): ...

    def register(group):
        serve.add_command(engine_cmd)    # not group.add_command: it belongs under `serve`

This module registers the group itself on `main` (its `register`), and `serve naive`.
Command modules are imported in name order, but `add_command` on the group works whenever it
runs, so the order does not matter.
"""

from __future__ import annotations

import click

from zero2vllm.commands._app import Z2VError


@click.group()
def serve() -> None:
    """Serve over HTTP: naive (the week-2 Flask baseline) and the commands others attach."""


@serve.command("naive")
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
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="torch CPU threads.")
@click.option("--access-log", is_flag=True, help="Print one line per request.")
def serve_naive(model_spec, host, port, device, dtype, max_model_len, max_new_tokens_limit, threads,
                access_log):
    """The naive API: Flask + transformers.generate, one request at a time.

    POST /generate {"prompt": "...", "max_new_tokens": 64, "temperature": 0}, GET /health,
    GET /metrics (Prometheus). Measure it with `z2v bench http://HOST:PORT --api generate`.
    """
    import torch

    from zero2vllm.models import ModelError
    from zero2vllm.instruments.naive import create_app, load_server

    if threads:
        torch.set_num_threads(threads)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise Z2VError(f"--device {device}: no CUDA GPU here; use --device cpu")
    try:
        server = load_server(model_spec, device=device, dtype=dtype, max_model_len=max_model_len,
                             max_new_tokens_limit=max_new_tokens_limit)
    except ModelError as exc:
        raise Z2VError(str(exc)) from None
    app = create_app(server)
    from zero2vllm.instruments.naive import make_http_server

    try:
        httpd = make_http_server(app, host, port, access_log=access_log)
    except OSError as exc:
        raise Z2VError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; try another --port") from None
    click.echo(f"naive API: {server.name} on {server.device}, context {server.max_model_len} tokens, "
               f"one request at a time", err=True)
    click.echo(f"listening on http://{host}:{httpd.server_port}  (POST /generate, GET /health, "
               f"GET /metrics; Ctrl-C to stop)", err=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


def register(group: click.Group) -> None:
    group.add_command(serve)
