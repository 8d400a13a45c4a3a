"""Admission at the transport: while the server is saturated, new requests wait unread in the kernel.

Receive livelock (Mogul & Ramakrishnan, 1997): a server that reads, parses and refuses every request as it
arrives can spend all its time refusing. Here, 768 closed-loop clients beyond a 256-request limit kept the event
loop so busy with 429s that each loop turn took tens of milliseconds, and admitted work, which needs several turns
per request, finished at 3-5% of capacity. The remedy is theirs: stop taking input while saturated. A
connection whose next request arrives while the server cannot admit is paused (its bytes stay in the kernel)
and held; each slot that frees resumes the newest held request (LIFO: it has the most life left); a request held
longer than `max_hold_ms` is read and refused with a 429 written straight to the socket (no task, no ASGI call).
With `max_hold_ms` 0 a new request is refused that way on arrival; only a retry (the same bytes resent right after
their 429) is still held.

The same protocol bounds slow clients: headers must arrive within `header_timeout_s` and fit in
`max_header_bytes` (else 408 / 431 and close), and a connection that never sends anything is closed after the
keep-alive timeout. Taught in 09_async_serving (§7).
"""
from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

TICK_S = 0.002  # how often the gate looks for expired holds and idle capacity


@dataclass(frozen=True)
class GateConfig:
    """Limits the transport enforces before the app sees a request."""
    max_hold_ms: float = 5.0           # a request waits unread at most this long, then gets 429 (0: never hold)
    retry_window_ms: float = 20.0      # the identical request resent this soon after its 429 is a retry that...
    retry_hold_s: float = 0.25         # ...ignored Retry-After (1 s): it waits unread up to this long instead
    header_timeout_s: float = 10.0     # the request line and headers must arrive within this
    max_header_bytes: int = 65_536     # request line + headers beyond this -> 431 (uvicorn sets no limit)


class _Finished:
    """Stands in for uvicorn's request cycle after the gate answered a request itself."""
    response_complete, keep_alive = True, True

    class message_event:  # noqa: N801 - uvicorn calls cycle.message_event.set() on disconnect
        @staticmethod
        def set() -> None:
            pass


class Gate:
    """One server's holding area: connections whose next request arrived while it could not admit."""

    def __init__(self, limit: Callable[[], int], on_refused: Callable[[], None], next_id: Callable[[], str],
                 config: GateConfig = GateConfig(), on_bad_request: Callable[[], None] = lambda: None):
        self.limit, self.on_refused, self.next_id, self.config = limit, on_refused, next_id, config
        self.on_bad_request = on_bad_request  # a request the HTTP parser refused (it never reaches the app)
        self.active = 0   # requests whose whole body has arrived and whose answer is not yet sent
        self.fresh: deque[tuple[float, GatedProtocol]] = deque()    # (deadline, connection), oldest left
        self.retries: deque[tuple[float, GatedProtocol]] = deque()  # retries that ignored Retry-After
        self.timer = None
        self.counts = {"held": 0, "resumed": 0, "expired": 0, "retries_held": 0}

    def can_admit(self) -> bool:
        return self.active < self.limit()

    def hold(self, protocol: GatedProtocol, retry: bool) -> None:
        now = time.monotonic()
        if retry:
            self.retries.append((now + self.config.retry_hold_s, protocol))
            self.counts["retries_held"] += 1
        else:
            self.fresh.append((now + self.config.max_hold_ms / 1e3, protocol))
            self.counts["held"] += 1
        if self.timer is None:
            self.timer = protocol.loop.call_later(TICK_S, self._tick, protocol.loop)

    def release(self) -> None:
        """A request was answered: if that freed a slot, read the newest held request now (fresh ones before
        retries). Not always: a GET answered meanwhile frees none while admitted requests fill the limit."""
        if not self.can_admit():
            return
        for queue in (self.fresh, self.retries):
            while queue:
                if queue.pop()[1].resume(refuse=False):
                    self.counts["resumed"] += 1
                    return

    def _tick(self, loop) -> None:
        now = time.monotonic()
        for queue in (self.fresh, self.retries):
            while queue and queue[0][0] < now:
                if queue.popleft()[1].resume(refuse=not self.can_admit()):
                    self.counts["expired"] += 1
        while (self.fresh or self.retries) and self.can_admit():  # capacity unused (e.g. a resumed GET)
            self.release()
        self.timer = loop.call_later(TICK_S, self._tick, loop) if self.fresh or self.retries else None

    def close(self) -> None:
        """Shutting down: read every held request (the app answers each 503 while draining)."""
        for queue in (self.fresh, self.retries):
            while queue:
                queue.pop()[1].resume(refuse=False)

    def refusal(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        """A complete 429 answer, request id echoed when it is text (else a fresh one)."""
        rid = next((v for k, v in headers if k == b"x-request-id"), b"")
        try:
            rid = rid.decode() or self.next_id()
        except UnicodeDecodeError:
            rid = self.next_id()
        body = json.dumps({"error": "server saturated: no slot freed while the request waited unread",
                           "code": "queue_full"}).encode()
        return (b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
                b"content-length: %d\r\nx-request-id: %s\r\n\r\n%s" % (len(body), rid.encode(), body))


class GatedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with admission, header limits and timeouts at the transport. The class
    attribute `gate` is set by `gated_protocol(gate)`."""
    gate: Gate

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._stash: bytes | None = None  # bytes read before the connection was held
        self._refuse = self._in_headers = self._counted = False
        self._header_bytes = self._header_size = 0  # bytes read while in headers; sizes of complete headers
        self._header_timer = None
        self._refused_at = -1e9  # when this connection last got a 429 from the gate...
        self._refused_key = self._message_key = None  # ...for which request (a hash of its first bytes)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        # uvicorn arms its keep-alive timer only after a response: a connection that never sends a byte would
        # stay open forever (2,020 of them did, for 60 s). Arm it now.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        idle = not self._in_headers and (self.cycle is None or self.cycle.response_complete)
        if idle:
            self._message_key = hash(data)
        if idle and not self.gate.can_admit():
            retry = self._is_retry()
            if self.gate.config.max_hold_ms <= 0 and not retry:
                self._feed_refused(data)  # refuse at once, here: no task, no ASGI call
                return
            self._unset_keepalive_if_required()
            self.transport.pause_reading()
            self._stash = data
            self.gate.hold(self, retry=retry)
            return
        self._feed(data)

    def _is_retry(self) -> bool:
        """The same bytes as the request this connection had refused within `retry_window_ms`: a client that
        ignored Retry-After. Identity, not timing alone: an open-loop client reuses a connection at once for a
        *new* request, and holding that one for `retry_hold_s` would turn its backlog into timeouts. A short
        window: an open-loop client that cycles through a few bodies over many connections sends the same bytes
        on a connection now and then (256 bodies over 1,024 connections reused in turn: with a 500 ms window,
        ~1% of its refusals were held 250 ms)."""
        recent = time.monotonic() - self._refused_at < self.gate.config.retry_window_ms / 1e3
        return recent and self._message_key == self._refused_key

    def _feed(self, data: bytes) -> None:
        in_headers_before = self._in_headers or (self.cycle is None or self.cycle.response_complete)
        # uvicorn's data_received, except that a parser error is answered in JSON naming it, like the app's own
        # errors (uvicorn answers plain text "Invalid HTTP request received.") and counted as bad input.
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self.gate.on_bad_request()
            self._close_with(400, "Bad Request", f"malformed HTTP request: {err}")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        if self._in_headers and in_headers_before:
            self._header_bytes += len(data)
            if self._header_bytes > self.gate.config.max_header_bytes:
                self._close_with(431, "Request Header Fields Too Large",
                                 f"request line and headers exceed {self.gate.config.max_header_bytes} bytes")

    def resume(self, refuse: bool) -> bool:
        """Read the held request; with refuse, a /predict request is answered 429 here. False if the client left."""
        data, self._stash = self._stash, None
        if data is None or self.transport is None or self.transport.is_closing():
            return False
        self.transport.resume_reading()
        if refuse:
            self._feed_refused(data)
        else:
            self._refuse = False
            self._feed(data)
        return True

    def _feed_refused(self, data: bytes) -> None:
        """Answer this request 429: written at once for a plain keep-alive POST /predict, else once the parser has
        read its headers (on_headers_complete)."""
        if not self._refuse_unparsed(data):
            self._refuse = True
            self._feed(data)

    def _refuse_unparsed(self, data: bytes) -> bool:
        """The common overload case, refused without uvicorn's per-header Python callbacks: `data` is exactly one
        complete keep-alive HTTP/1.1 POST /predict with a Content-Length body. At 3x capacity the server refuses
        ~15,000 requests a second on the same event loop that finishes admitted work, so a refusal must be cheap.
        False (the parser handles it) for anything else."""
        end = data.find(b"\r\n\r\n")
        if end < 0 or not data.startswith(b"POST /predict HTTP/1.1\r\n"):
            return False
        head = data[:end + 2].lower()
        start = head.find(b"\r\ncontent-length:")
        if start < 0 or b"\r\ntransfer-encoding:" in head or b"\r\nconnection:" in head:
            return False
        try:
            length = int(head[start + 17:head.index(b"\r\n", start + 2)])
        except ValueError:
            return False
        if end + 4 + length != len(data):
            return False
        rid = head.find(b"\r\nx-request-id:")
        headers = [] if rid < 0 else [(b"x-request-id", data[rid + 16:data.index(b"\r\n", rid + 2)].strip())]
        self._refuse_with_429(headers, keep_alive=True)
        return True

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers, self._header_bytes, self._header_size = True, 0, 0
        self._header_timer = self.loop.call_later(self.gate.config.header_timeout_s, self._header_timeout)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._header_size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self._in_headers = False
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if self._header_size + len(self.url) > self.gate.config.max_header_bytes:  # all arrived in one read
            self.cycle = _Finished()
            self._close_with(431, "Request Header Fields Too Large",
                             f"request line and headers exceed {self.gate.config.max_header_bytes} bytes")
            return
        refuse, self._refuse = self._refuse, False
        if refuse and self.url.split(b"?", 1)[0] == b"/predict" and self.parser.get_method() == b"POST":
            self.cycle = _Finished()  # the body that follows is skipped by uvicorn's on_body / on_message_complete
            self.on_refused_here()
            return
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if not isinstance(self.cycle, _Finished) and not self._counted:
            self._counted = True  # counted once the body is complete: a stalled body holds no slot
            self.gate.active += 1

    def on_response_complete(self) -> None:
        self._uncount()
        super().on_response_complete()

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self.gate.active -= 1
            self.gate.release()

    def on_refused_here(self) -> None:
        self._refuse_with_429(self.headers, keep_alive=self.parser.should_keep_alive())

    def _refuse_with_429(self, headers: list[tuple[bytes, bytes]], keep_alive: bool) -> None:
        """The gate's 429, counted and remembered (a resend of this request is a retry), written to the socket."""
        self.gate.on_refused()
        self._refused_at, self._refused_key = time.monotonic(), self._message_key
        self.transport.write(self.gate.refusal(headers))
        if not keep_alive:
            self.transport.close()
            return
        self.on_response_complete()

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._in_headers:
            self._close_with(408, "Request Timeout",
                             f"request line and headers not complete within {self.gate.config.header_timeout_s:g} s")

    def _close_with(self, status: int, reason: str, message: str) -> None:
        code = {400: "bad_http", 408: "timeout", 431: "bad_headers"}[status]
        body = json.dumps({"error": message, "code": code}).encode()
        if not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nconnection: close\r\n"
                                 b"content-length: %d\r\n\r\n%s" % (status, reason.encode(), len(body), body))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._stash = None
        self._uncount()
        super().connection_lost(exc)


def gated_protocol(gate: Gate) -> type[GatedProtocol]:
    """The protocol class to give uvicorn (`uvicorn.Config(http=...)`) for this gate."""
    return type("GatedProtocol", (GatedProtocol,), {"gate": gate})
