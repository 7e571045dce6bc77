"""Serving the dashboard: waitress (a threaded production WSGI server) when installed, else
werkzeug's threaded server. Both bind where they are told; the command defaults to 127.0.0.1."""

from __future__ import annotations

import ipaddress

LOOPBACK_HOSTNAMES = ("localhost", "localhost.localdomain")
LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1"]  # what a browser on this machine sends as Host


def host_name(header: str) -> str | None:
    """The name in a Host header ("[::1]:8765" -> "::1", "Example.org:80" -> "example.org"),
    or None when it is not a host[:port] at all."""
    header = (header or "").strip().lower()
    if header.startswith("["):  # an IPv6 literal, brackets and all
        name, sep, rest = header[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        try:
            return str(ipaddress.IPv6Address(name))
        except ValueError:
            return None
    name, _, port = header.partition(":")
    if not name or (port and not port.isdigit()) or not all(c.isalnum() or c in ".-_" for c in name):
        return None
    return name


def host_allowed(header: str, allowed: list[str]) -> bool:
    """Whether a request's Host header names one of ALLOWED (names or addresses; the port is
    not compared): against DNS rebinding, a page elsewhere cannot reach the dashboard by name."""
    name = host_name(header)
    if name is None:
        return False
    return any(name == _normal(a) for a in allowed)


def _normal(name: str) -> str:
    name = name.strip().lower().strip("[]")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def allowed_hosts(bind: str, extra: list[str] = ()) -> list[str]:
    """The Host names to accept for a server bound to BIND: loopback names, the bound address
    itself when it is one (not 0.0.0.0 or ::), and the names given with --allow-host."""
    names = list(LOOPBACK_NAMES)
    try:
        if not ipaddress.ip_address(bind.strip("[]")).is_unspecified:
            names.append(bind.strip("[]"))
    except ValueError:
        names.append(bind)  # a host name
    return names + [n for n in extra if n]


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_HOSTNAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Server:
    """A bound server: `.port` is the real port (useful with port 0), `.run()` blocks."""

    def __init__(self, app, host: str, port: int, threads: int = 4):
        self.host = host
        try:
            from waitress.server import create_server
        except ImportError:
            create_server = None
        if create_server is not None:
            import logging

            # "Task queue depth is N" on every burst of requests is noise for a local dashboard
            logging.getLogger("waitress.queue").setLevel(logging.ERROR)
            self.kind = "waitress"
            self._server = create_server(app, host=host, port=port, threads=threads,
                                         ident="zero2vllm", connection_limit=200, channel_timeout=30)
            self.port = self._server.effective_port
            self.run = self._server.run
            self.close = self._server.close
        else:
            from werkzeug.serving import make_server

            self.kind = "werkzeug"
            self._server = make_server(host, port, app, threaded=True)
            self.port = self._server.server_port
            self.run = self._server.serve_forever
            self.close = self._server.shutdown

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

