"""Serving the dashboard: waitress (a threaded production WSGI server) when installed, else
werkzeug's threaded server. Both bind where they are told; the command defaults to 127.0.0.1."""

from __future__ import annotations

import ipaddress

LOOPBACK_HOSTNAMES = ("localhost", "localhost.localdomain")


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

