"""The naive API's HTTP server: werkzeug's threaded server, bounded and with timeouts.

A socket silent for `timeout` seconds (an idle keep-alive connection, a half-sent request) is
closed, and at most `max_connections` connection threads run; more wait in the listen backlog.
"""

from __future__ import annotations

import threading


def make_http_server(app, host: str = "127.0.0.1", port: int = 0, *, access_log: bool = False,
                     timeout: float = 5.0, max_connections: int = 64):
    """A threaded werkzeug server for `app` (one thread per connection; the lock serialises).

    HTTP/1.1 keep-alive, and no per-request log line unless asked: a benchmark sends thousands.
    A socket silent for `timeout` seconds (idle keep-alive, half-sent request) is closed, and at
    most `max_connections` threads run: further connections wait in the listen backlog.
    """
    from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

    class Handler(WSGIRequestHandler):
        protocol_version = "HTTP/1.1"
        default_request_version = "HTTP/1.0"  # so a garbage request line gets a status line back, not a bare body

        def setup(self):
            self.timeout = timeout  # socketserver applies it to the connection
            super().setup()

        def log_request(self, *args, **kwargs):
            if access_log:
                super().log_request(*args, **kwargs)

        def log_error(self, *args, **kwargs):
            if access_log:
                super().log_error(*args, **kwargs)

    class BoundedServer(ThreadedWSGIServer):
        slots = threading.BoundedSemaphore(max_connections)

        def process_request(self, request, client_address):
            self.slots.acquire()
            try:
                super().process_request(request, client_address)
            except BaseException:
                self.slots.release()
                raise

        def process_request_thread(self, request, client_address):
            try:
                super().process_request_thread(request, client_address)
            finally:
                self.slots.release()

    return BoundedServer(host, port, app, handler=Handler)


class ServerThread:
    """Run a WSGI app on a werkzeug threaded server in a background thread (tests, benchmarks).

    port=0 picks a free port; `.url` tells which. `stop()` shuts it down cleanly.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, **kwargs):
        self.server = make_http_server(app, host, port, **kwargs)
        self.host, self.port = host, self.server.server_port
        self.url = f"http://{host}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "ServerThread":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
