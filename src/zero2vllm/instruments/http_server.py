"""HTTP/1.1 framing for the engine's API server (asyncio streams, h11 parsing), as uvicorn is vLLM's.

The endpoints (api_server.py) get one `Request` at a time and answer through an `Exchange`.
This module adds what a server any local client can reach needs, and nothing about the API:
- h11 parses, so malformed HTTP (`Content-Length: abc`, a 64 KiB header line) gets a 4xx answer,
  not a dropped connection;
- a keep-alive timeout for idle connections and a deadline for a request to arrive in full,
  so half-sent requests do not hold connections open;
- size limits on headers and bodies;
- a watch on the socket while a request runs: a client that hangs up has its handler cancelled,
  so the engine stops generating for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from http import HTTPStatus
from typing import Awaitable, Callable

import h11


@dataclass
class Limits:
    keep_alive_s: float = 5.0          # an idle connection between requests (uvicorn's default)
    request_s: float = 10.0            # from a request's first byte until its body is complete
    write_s: float = 30.0              # a client that stops reading its stream
    max_header_bytes: int = 16 << 10        # h11's default, as uvicorn
    max_body_bytes: int = 4 << 20


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]            # lower-case names; a repeated header keeps its last value
    body: bytes


class ClientGone(Exception):
    """The client hung up or stopped reading."""


class _Refuse(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Exchange:
    """The response half of one request."""

    def __init__(self, conn: h11.Connection, writer: asyncio.StreamWriter, limits: Limits):
        self.conn, self.writer, self.limits = conn, writer, limits
        self.started = False

    async def _write(self, event) -> None:
        try:
            self.writer.write(self.conn.send(event))
            await asyncio.wait_for(self.writer.drain(), self.limits.write_s)
        except (ConnectionError, TimeoutError) as exc:
            raise ClientGone from exc

    async def send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.started = True
        headers = [("content-type", content_type), ("content-length", str(len(body)))]
        await self._write(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
        await self._write(h11.Data(data=body))
        await self._write(h11.EndOfMessage())

    async def start_stream(self, status: int, content_type: str) -> None:
        self.started = True  # no content-length: h11 sends the body chunked
        headers = [("content-type", content_type), ("cache-control", "no-cache")]
        await self._write(h11.Response(status_code=status, headers=headers, reason=_reason(status)))

    async def send_chunk(self, data: bytes) -> None:
        await self._write(h11.Data(data=data))

    async def end_stream(self) -> None:
        await self._write(h11.EndOfMessage())


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


Handler = Callable[[Request, Exchange], Awaitable[None]]


class HTTPServer:
    """Calls `app(request, exchange)` per request; `error_body(status, message)` words refusals."""

    def __init__(self, app: Handler, error_body: Callable[[int, str], bytes], limits: Limits | None = None):
        self.app, self.error_body, self.limits = app, error_body, limits or Limits()

    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        try:
            while True:
                try:
                    request = await self._read_request(conn, reader)
                except (h11.RemoteProtocolError, _Refuse) as exc:
                    status = getattr(exc, "status", None) or exc.error_status_hint
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await Exchange(conn, writer, self.limits).send(status, self.error_body(status, str(exc)))
                    return
                if request is None:
                    return
                exchange = Exchange(conn, writer, self.limits)
                await self._run_watched(request, exchange, conn, reader)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return  # keep-alive ends (Connection: close, HTTP/1.0, an unfinished answer)
                conn.start_next_cycle()
        except (ClientGone, ConnectionError, h11.ProtocolError):
            pass
        finally:
            writer.close()

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Request | None:
        loop, limits = asyncio.get_running_loop(), self.limits
        head, body, deadline = None, bytearray(), None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if deadline is None and conn.trailing_data[0]:
                    deadline = loop.time() + limits.request_s
                timeout = limits.keep_alive_s if deadline is None else deadline - loop.time()
                try:
                    data = await asyncio.wait_for(reader.read(65536), max(timeout, 0))
                except TimeoutError:
                    if deadline is None:
                        return None  # idle keep-alive: close quietly
                    raise _Refuse(408, "the request did not arrive in time") from None
                if deadline is None and data:
                    deadline = loop.time() + limits.request_s
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                head = event
                length = dict(event.headers).get(b"content-length")
                if length is not None and int(length) > limits.max_body_bytes:
                    raise _Refuse(413, f"the body is over {limits.max_body_bytes} bytes")
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > limits.max_body_bytes:
                    raise _Refuse(413, f"the body is over {limits.max_body_bytes} bytes")
            elif isinstance(event, h11.EndOfMessage):
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers}
                target = head.target.decode("latin-1")
                return Request(head.method.decode("latin-1"), target.split("?")[0], headers, bytes(body))
            elif isinstance(event, h11.ConnectionClosed):
                return None

    async def _run_watched(self, request: Request, exchange: Exchange, conn, reader) -> None:
        """Run the handler while watching the socket; the client hanging up cancels the handler."""
        handler = asyncio.ensure_future(self.app(request, exchange))
        watcher = asyncio.ensure_future(self._watch(conn, reader))
        await asyncio.wait({handler, watcher}, return_when=asyncio.FIRST_COMPLETED)
        for task in (watcher, handler) if handler.done() else (handler, watcher):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ClientGone, ConnectionError):
                await task
        if not handler.cancelled() and handler.exception() is None and watcher.cancelled():
            return
        raise ClientGone

    async def _watch(self, conn: h11.Connection, reader: asyncio.StreamReader) -> None:
        while (data := await reader.read(65536)):
            conn.receive_data(data)  # a pipelined next request: h11 keeps it for the next cycle
            if len(conn.trailing_data[0]) > self.limits.max_header_bytes + self.limits.max_body_bytes:
                await asyncio.Event().wait()  # stop reading; the handler's end decides what happens
