"""`z2v serve dashboard`: the local web dashboard over the same store as the CLI.

Added to the shared `serve` group (zero2vllm.commands.serve); flask and the web package are
imported only when the command runs, so `z2v status` stays fast.
"""

from __future__ import annotations

import click

from zero2vllm.commands._app import AppContext, Z2VError, pass_app


@click.command("dashboard")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback exposes your tracker to the network.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64),
              help="Requests served at once (more only adds contention for Python's GIL).")
@click.option("--open", "open_browser", is_flag=True, help="Open the dashboard in your web browser.")
@click.option("--no-cache", is_flag=True, hidden=True,
              help="Render every page afresh (for benchmarks: the cost of a cache miss).")
@pass_app
def dashboard(app: AppContext, host: str, port: int, threads: int, open_browser: bool,
              no_cache: bool) -> None:
    """Serve the dashboard: progress, charts, the week's checklist, labs and the plan.

    Same data as the command line: a change made in either shows on reload in the other.
    Every form is CSRF-protected; by default only this machine can connect.
    """
    try:
        from zero2vllm.web import create_app
        from zero2vllm.web.server import Server, is_loopback
    except ImportError as exc:
        raise Z2VError(f"the dashboard needs the web extra ({exc.name} is missing): "
                       "pip install 'zero2vllm[web]'") from None

    app.store  # opens and migrates the database now: a bad file is a one-line error, not a page
    loopback = is_loopback(host)
    if not loopback:
        click.echo(f"Warning: binding {host} lets other machines reach your tracker; "
                   "use the default 127.0.0.1 unless you mean it.", err=True)
    web = create_app(app.db_path, trusted_hosts=None if loopback else [], cache=not no_cache)
    try:
        server = Server(web, host, port, threads=threads)
    except OSError as exc:
        hint = "pass another --port (or --port 0 for any free one)" if exc.errno in (98, 48, 10048) else \
            "check --host"
        raise Z2VError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; {hint}") from None
    click.echo(f"Dashboard on {server.url}  (database {app.db_path}; {server.kind}, Ctrl-C stops it)")
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        click.echo("Dashboard stopped.")


def register(group: click.Group) -> None:
    from zero2vllm.commands.serve import serve  # the shared group; it registers itself on `main`

    serve.add_command(dashboard)
