"""`z2v group join URL` / `z2v group leave`, and `z2v sync [--status] [--json]`: one learner's
store synced with a group server (docs/group.md)."""

from __future__ import annotations

import platform
import sys

import click

from zero2vllm.commands._app import AppContext, Z2VError, pass_app


def _home():
    from zero2vllm.paths import data_dir

    return data_dir()


def _config(required: bool = True) -> dict | None:
    from zero2vllm.group.client import GroupError, load_config

    try:
        config = load_config(_home())
    except GroupError as exc:
        raise Z2VError(str(exc)) from None
    if config is None and required:
        raise Z2VError("this machine has not joined a group: run `z2v group join URL` first")
    return config


@click.group("group")
def group() -> None:
    """Join or leave a group server (a study group, a mentor, your other machine)."""


@group.command("join")
@click.argument("url")
@click.option("--invite", default=None, help="An invite token from the group's admin: makes a new account.")
@click.option("--email", default=None, help="Your e-mail on the server.")
@click.option("--name", default=None, help="Your name (a new account, with --invite).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
def join(url: str, invite: str | None, email: str | None, name: str | None, password_stdin: bool) -> None:
    """Get an API token from the group server at URL and keep it (0600) for `z2v sync`."""
    from zero2vllm.group.client import Client, GroupError, save_config

    if not email:
        raise Z2VError("give --email (the account's e-mail on the server)")
    if invite and not name:
        raise Z2VError("a new account needs --name with --invite")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=bool(invite), err=True)
    if not password:
        raise Z2VError("the password is empty")
    token_name = f"z2v on {platform.node() or 'this machine'}"[:100]
    try:
        client = Client(url)
        body = ({"invite": invite, "email": email, "name": name, "password": password, "token_name": token_name}
                if invite else {"email": email, "password": password, "name": token_name})
        answer = client.request("POST", "/api/v1/tokens", body, retries=1)
        token = answer.get("token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise GroupError(f"{client.url} answered without a token; is it a zero2vllm group server?")
        client.token = token
        me = client.me()
    except GroupError as exc:
        raise Z2VError(str(exc)) from None
    learner = {k: me.get(k) for k in ("id", "email", "name", "role") if k in me} if isinstance(me, dict) else {}
    path = save_config(_home(), {"url": client.url, "token": token, "learner": learner})
    who = learner.get("email") or email
    click.echo(f"Joined {client.url} as {who}; the token is in {path}. Run `z2v sync` to sync.")


@group.command("leave")
def leave() -> None:
    """Forget the group server and its token on this machine (your local data stays)."""
    from zero2vllm.group.client import config_path

    path = config_path(_home())
    config = _config(required=False)
    if config is None:
        click.echo("This machine is not in a group; nothing to do.")
        return
    path.unlink()
    click.echo(f"Left {config['url']}: removed {path}. Your local data stays; "
               "revoke the token on the server's tokens page if this machine is lost.")


@click.command("sync")
@click.option("--status", "show_status", is_flag=True, help="Only show what is pending; contact no server.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def sync_cmd(app: AppContext, show_status: bool, as_json: bool) -> None:
    """Push this machine's changes to the group server, then pull the others' (docs/group.md)."""
    from zero2vllm import ui
    from zero2vllm.group import client as gc
    from zero2vllm.tracker import syncstore

    config = _config(required=not show_status)
    if show_status:
        st = syncstore.state(app.store.conn)
        bound = config is not None and st["server"] == gc.server_key(config)
        data = {"server": config["url"] if config else None,
                "learner": (config or {}).get("learner"),
                "pending": st["pending"] if bound or config is None else syncstore.total(app.store.conn),
                "last_sync": st["last_sync_at"] if bound else None, "device": st["device"]}
        if as_json:
            ui.echo_json(data)
            return
        if config is None:
            n = data["pending"]
            click.echo(f"Not in a group ({n} local change{'' if n == 1 else 's'} kept for when you join).")
            return
        who = (data["learner"] or {}).get("email", "?")
        click.echo(f"Server {data['server']} as {who}: {data['pending']} changes to push; "
                   f"last sync {data['last_sync'] or 'never'}.")
        return
    try:
        out = gc.sync(app.store, config)
    except gc.GroupError as exc:
        raise Z2VError(str(exc)) from None
    if as_json:
        ui.echo_json(out)
        return
    click.echo(f"Pushed {out['pushed']} changes ({out['duplicates']} already there), pulled {out['pulled']} "
               f"({out['applied']} applied here) with {config['url']}.")


COMMANDS = {"group": group, "sync": sync_cmd}
