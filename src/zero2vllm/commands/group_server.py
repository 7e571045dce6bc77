"""`z2v serve group` (the group server) and `z2v group-admin` (invites, the first admin).

psycopg, flask and waitress are imported only when a command runs, so `z2v status` and
`z2v --help` never load them.
"""

from __future__ import annotations

import sys

import click

from zero2vllm.commands._app import Z2VError

DB_OPTION = click.option("--db", "db_url", envvar="ZERO2VLLM_GROUP_DB", metavar="URL",
                         help="postgresql://user@host:port/dbname (or $ZERO2VLLM_GROUP_DB).")


def _connect(db_url):
    """A migrated connection, or the one-line error (exit 2)."""
    try:
        import psycopg

        from zero2vllm.group import db
    except ImportError as exc:
        raise Z2VError(f"the group server needs the group extra ({exc.name} is missing): "
                       "pip install 'zero2vllm[group]'") from None
    try:
        conn = db.connect(db_url)
        db.migrate(conn)
        return conn
    except db.GroupDBError as exc:
        raise Z2VError(str(exc)) from None
    except psycopg.Error as exc:
        raise Z2VError(f"the group database refused: {str(exc).strip().splitlines()[0]}") from None


@click.command("group")
@DB_OPTION
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; put a TLS reverse proxy in front for anything but loopback.")
@click.option("--port", default=8600, show_default=True, type=click.IntRange(0, 65535))
@click.option("--secret-file", type=click.Path(dir_okay=False), default=None,
              help="Key for the login forms' CSRF tokens; made 0600 if missing "
                   "(default: $ZERO2VLLM_GROUP_SECRET_FILE, else group-server.secret in the data dir).")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64),
              help="Requests served at once (each holds one database connection).")
@click.option("--trusted-proxies", default=0, show_default=True, type=click.IntRange(0, 5),
              help="Reverse proxies in front whose X-Forwarded-For/-Proto/-Host to believe.")
@click.option("--cookie-secure", type=click.Choice(["auto", "always", "never"]), default="auto",
              show_default=True, help="Secure cookies; auto: always, except plain http on loopback.")
def serve_group(db_url, host, port, secret_file, threads, trusted_proxies, cookie_secure):
    """The group server: accounts, sync for `z2v sync`, and the group dashboard under /group/.

    Sessions live in the database, so a restart logs nobody out. Make the first admin with
    `z2v group-admin create-admin`, then invite people from /group/admin/invites.
    """
    _connect(db_url).close()  # a bad --db is one line here, before anything listens
    from zero2vllm.group import server
    from zero2vllm.group.app import create_app

    try:
        key = server.load_secret(secret_file)
    except server.SecretError as exc:
        raise Z2VError(str(exc)) from None
    secure = {"auto": "auto", "always": True, "never": False}[cookie_secure]
    app = create_app(db_url, secret_key=key, pool_size=threads + 2, secure_cookies=secure,
                     trusted_proxies=trusted_proxies)
    try:
        httpd = server.Server(app, host, port, threads=threads)
    except OSError as exc:
        raise Z2VError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; try another --port") from None
    click.echo(f"group server on {httpd.url}group/  (waitress, {threads} threads; Ctrl-C stops it)", err=True)
    try:
        httpd.run()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.close()
        app.extensions["z2v_pool"].close()


@click.group("group-admin")
def group_admin():
    """Run the group server's accounts from the shell: the first admin, invites."""


@group_admin.command("create-admin")
@DB_OPTION
@click.option("--email", required=True)
@click.option("--name", default=None, help="Shown on the dashboard (default: the email's name).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
def create_admin(db_url, email, name, password_stdin):
    """Make an admin account (the first one, to start a group). Asks for the password."""
    from zero2vllm.group import auth, invites

    if invites.email_problem(email):
        raise Z2VError(invites.email_problem(email))
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if auth.password_problem(password):
        raise Z2VError(auth.password_problem(password))
    with _connect(db_url) as conn:
        if conn.execute("SELECT 1 FROM account WHERE email = %s", (email.strip().lower(),)).fetchone():
            raise Z2VError(f"an account for {email.strip().lower()} exists already")
        account_id = auth.create_account(conn, email, name or email.split("@")[0], "admin", password)
    click.echo(f"admin {email.strip().lower()} made (account {account_id}); log in at /group/login")


@group_admin.command("invite")
@DB_OPTION
@click.option("--role", type=click.Choice(["learner", "mentor", "admin"]), default="learner", show_default=True)
@click.option("--email", default=None, help="Only this address may use the invite.")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 90), help="Valid for this many days.")
@click.option("--url", "base_url", default=None, help="The server's public address, to print the link.")
def invite(db_url, role, email, days, base_url):
    """Make a single-use invite and print its token (shown once) and link."""
    from zero2vllm.group import invites

    if email and invites.email_problem(email):
        raise Z2VError(invites.email_problem(email))
    with _connect(db_url) as conn:
        token = invites.create(conn, role, email=email, days=days)
    base = (base_url or "https://YOUR-SERVER").rstrip("/")
    click.echo(f"invite for a {role}{f' ({email})' if email else ''}, valid {days} days, works once:")
    click.echo(token)
    click.echo(f"  in a browser: {base}/group/join?invite={token}")
    click.echo(f"  from the CLI: z2v group join {base} --invite {token}")


COMMANDS = {"group-admin": group_admin}
SERVE_COMMANDS = {"group": serve_group}  # z2v serve group
