"""A lean HTTP/1.1 client for the load generator: asyncio protocols, keep-alive, httptools' C parser.

Why not aiohttp? A load generator that shares the machine with the server must cost far less per request
than the server does, or it measures itself. aiohttp spent ~295 us of CPU per request here, more than the
whole --no-model server (~214 us); this client does one write per request and parses the answer with the
same C parser uvicorn uses. It does exactly what the load generator needs (POST a body, read status and
body, keep connections alive) and nothing else: no redirects, no cookies, no TLS, no chunked uploads.
Compared side by side with aiohttp in 09_async_serving.
"""
from __future__ import annotations

import asyncio
from collections import deque
from urllib.parse import urlsplit

import httptools


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time (no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.chunks: list[bytes] = []
        self.answering = False  # some of the answer has arrived
        self.closed = False
        self.keep_alive = True

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self._fail(ConnectionError(f"unparseable HTTP response: {err}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionResetError("server closed the connection before answering"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.chunks, self.answering = [], True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
            self.waiter.set_result((self.parser.get_status_code(), body))

    def _fail(self, err: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(err)

    def send(self, data: bytes) -> asyncio.Future:
        """Write one whole request; the future resolves to (status, body)."""
        self.waiter = asyncio.get_running_loop().create_future()
        self.answering = False
        self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class FastClient:
    """POSTs to one host:port over at most `connections` keep-alive connections (extra callers wait).

    Use as `async with FastClient(url) as client: status, body = await client.post(body)`.
    """

    def __init__(self, url: str, connections: int = 256, content_type: str = "application/json"):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"FastClient speaks plain http://host:port/path; got {url!r}")
        if connections < 1:
            raise ValueError(f"connections must be >= 1; got {connections}")
        self.host, self.port = parts.hostname, parts.port or 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._head = (f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {content_type}\r\n"
                      f"Content-Length: ").encode()
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(connections)
        self._open: set[_Connection] = set()

    async def __aenter__(self) -> "FastClient":
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Abort every connection (idle or busy)."""
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.host, self.port)
        self._open.add(conn)
        return conn

    def _reuse(self) -> _Connection | None:
        while self._idle:
            # Least recently used first: each connection rests as long as possible between requests, so a server
            # that holds a connection re-sending at once after a 429 (a retry loop) does not mistake this
            # open-loop client for one. An idle connection the server closed meanwhile is retried (below).
            conn = self._idle.popleft()
            if not conn.closed:
                return conn
            self._open.discard(conn)
        return None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """(status, body) of one POST. Raises ConnectionError (refused, reset) or whatever cancels it."""
        request = self._head + str(len(body)).encode() + b"\r\n\r\n" + body
        async with self._slots:
            conn = self._reuse()
            reused = conn is not None
            for attempt in (0, 1):
                if conn is None:
                    conn = await self._connect()
                try:
                    status, payload = await conn.send(request)
                except ConnectionError:
                    self._forget(conn)
                    # a kept-alive connection the server closed while idle, before any answer: one retry on
                    # a fresh connection (the request never reached the handler); anything else is an error
                    if reused and attempt == 0 and not conn.answering:
                        conn, reused = None, False
                        continue
                    raise
                except BaseException:  # cancelled or timed out mid-request: the answer may still come, so
                    self._forget(conn)  # this connection can never be reused
                    raise
                if conn.keep_alive and not conn.closed:
                    self._idle.append(conn)
                else:
                    self._forget(conn)
                return status, payload
        raise AssertionError("unreachable")

    def _forget(self, conn: _Connection) -> None:
        conn.close()
        self._open.discard(conn)
