"""A small asyncio HTTP/1.1 client: keep-alive connections, JSON bodies, streamed responses.

Why not httpx? A load generator must never be the bottleneck. On a 2-core machine httpx's
async pool manages about 300-500 requests/s; this client does several thousand, because it
does only what a benchmark needs: one host, keep-alive, Content-Length or chunked bodies,
line-by-line streaming for server-sent events. It has no dependencies, so the benchmark also
runs in a bare image with only the standard library.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import ssl as ssllib
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator
from urllib.parse import urlsplit


class HTTPError(Exception):
    """The connection failed or the server broke the protocol."""


class Response:
    def __init__(self, conn: "_Conn", status: int, reason: str, headers: dict[str, str], version: str):
        self._conn, self.status_code, self.reason = conn, status, reason
        self.headers, self.version = headers, version
        self.content = b""
        te = headers.get("transfer-encoding", "").lower()
        self._chunked = "chunked" in te
        length = headers.get("content-length")
        self._remaining = int(length) if length is not None and not self._chunked else None
        self._done = False
        conn_hdr = headers.get("connection", "").lower()
        self.keep_alive = (conn_hdr != "close") and (version == "HTTP/1.1" or conn_hdr == "keep-alive") \
            and (self._chunked or self._remaining is not None)

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives (de-chunked)."""
        r = self._conn.reader
        if self._done:
            return
        try:
            if self._chunked:
                while True:
                    size_line = await r.readuntil(b"\r\n")
                    size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while (await r.readuntil(b"\r\n")) != b"\r\n":  # trailers
                            pass
                        break
                    data = await r.readexactly(size + 2)
                    yield data[:-2]
            elif self._remaining is not None:
                while self._remaining > 0:
                    data = await r.read(min(self._remaining, 65536))
                    if not data:
                        raise HTTPError("the server closed the connection mid-body")
                    self._remaining -= len(data)
                    yield data
            else:  # no length: the body ends when the server closes
                while data := await r.read(65536):
                    yield data
        except (asyncio.IncompleteReadError, ValueError, asyncio.LimitOverrunError) as exc:
            self.keep_alive = False
            raise HTTPError(f"malformed or truncated response body: {exc}") from None
        self._done = True

    async def aread(self) -> bytes:
        parts = [chunk async for chunk in self.aiter_raw()]
        self.content = b"".join(parts)
        return self.content

    async def aiter_lines(self) -> AsyncIterator[str]:
        """Lines of the body as they arrive (for server-sent events)."""
        buf = b""
        async for chunk in self.aiter_raw():
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield line.rstrip(b"\r").decode("utf-8", "replace")
        if buf:
            yield buf.decode("utf-8", "replace")

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class _Conn:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.reused = False

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass


class AsyncHTTPClient:
    """Keep-alive connections to one host, at most `max_connections` at a time."""

    def __init__(self, base_url: str, *, max_connections: int = 256, timeout: float = 600.0,
                 connect_timeout: float = 10.0):
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.scheme, self.host = u.scheme, u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.prefix = u.path.rstrip("/")
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._host_header = f"{self.host}:{self.port}".encode()

    async def _connect(self) -> _Conn:
        ssl = ssllib.create_default_context() if self.scheme == "https" else None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=ssl, limit=1 << 20),
                self.connect_timeout,
            )
        except asyncio.TimeoutError:
            raise HTTPError(f"connecting to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise HTTPError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
        return _Conn(reader, writer)

    def _path(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            u = urlsplit(path)
            return (u.path or "/") + (f"?{u.query}" if u.query else "")
        return self.prefix + path

    async def _send(self, method: str, path: str, body: bytes | None, headers: dict | None) -> tuple[_Conn, Response]:
        head = [f"{method} {self._path(path)} HTTP/1.1".encode(), b"Host: " + self._host_header,
                b"Accept: */*", b"Connection: keep-alive"]
        if body is not None:
            head += [b"Content-Type: application/json", f"Content-Length: {len(body)}".encode()]
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}".encode())
        raw = b"\r\n".join(head) + b"\r\n\r\n" + (body or b"")
        for attempt in (0, 1):
            conn = self._idle.pop() if self._idle else await self._connect()
            try:
                conn.writer.write(raw)
                await conn.writer.drain()
                status_head = await conn.reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
                conn.close()
                if conn.reused and attempt == 0:  # the server dropped an idle keep-alive socket
                    continue
                raise HTTPError(f"connection to {self.host}:{self.port} failed: {type(exc).__name__} {exc}") from None
            except asyncio.LimitOverrunError:
                conn.close()
                raise HTTPError("response headers too large") from None
            lines = status_head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                conn.close()
                raise HTTPError(f"not an HTTP response: {lines[0][:80]!r}")
            hdrs = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    hdrs[k.strip().lower()] = v.strip()
            return conn, Response(conn, int(parts[1]), parts[2] if len(parts) > 2 else "", hdrs, parts[0])
        raise HTTPError("unreachable")  # pragma: no cover

    def _release(self, conn: _Conn, resp: Response | None) -> None:
        if resp is not None and resp.keep_alive and resp._done:
            conn.reused = True
            self._idle.append(conn)
        else:
            conn.close()

    @asynccontextmanager
    async def stream(self, method: str, path: str, *, json: Any = None, headers: dict | None = None):
        """`async with client.stream("POST", "/x", json=...) as resp: async for line in resp.aiter_lines()`"""
        body = jsonlib.dumps(json).encode() if json is not None else None
        async with self._slots:
            conn, resp = None, None
            try:
                async with asyncio.timeout(self.timeout):
                    conn, resp = await self._send(method, path, body, headers)
                    yield resp
            except TimeoutError:
                raise HTTPError(f"no complete answer within {self.timeout:g} s") from None
            finally:
                if conn is not None:
                    self._release(conn, resp)

    async def request(self, method: str, path: str, *, json: Any = None, headers: dict | None = None) -> Response:
        async with self.stream(method, path, json=json, headers=headers) as resp:
            await resp.aread()
        return resp

    async def get(self, path: str) -> Response:
        return await self.request("GET", path)

    async def post(self, path: str, *, json: Any = None) -> Response:
        return await self.request("POST", path, json=json)

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()
