"""The HTTP layer of POST /predict as bare ASGI: headers read in one pass, refusals on headers alone, the body
read under a size and time limit, answers and error answers sent without Request/Response objects.

Taught in 09_async_serving.
"""
from __future__ import annotations

import asyncio
import json
import math

from labkit.serve.protocol import HTTPError, error_answer
from labkit.serve.telemetry import OUTCOMES

JSON_HEADERS = [(b"content-type", b"application/json")]


def request_headers(scope: dict) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(Content-Length, X-Request-Id, Upgrade) from the raw ASGI headers, in one pass."""
    length = rid = upgrade = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = value
        elif name == b"x-request-id":
            rid = value
        elif name == b"upgrade":
            upgrade = value
    return length, rid, upgrade


def header_refusal(rid: bytes | None, upgrade: bytes | None) -> HTTPError | None:
    """A 400 for a request refused on its headers alone, before admission and before its body is read."""
    if upgrade is not None:
        # `curl --http2` on http:// asks to switch to HTTP/2 (Upgrade: h2c). uvicorn's httptools parser then
        # stops at the headers and the body never reaches the app: it read as empty, a 400 malformed_json that
        # blamed a valid body. This server speaks HTTP/1.1 only, so it says so; the connection is closed after
        # the answer (the parser no longer reads that stream).
        name = upgrade.decode("latin-1")
        return HTTPError(400, "unsupported_upgrade", f"Upgrade: {name} is not supported; this server speaks "
                         "HTTP/1.1 only (curl: use --http1.1, not --http2, on http://)")
    if rid is not None:
        try:
            rid.decode()
        except UnicodeDecodeError as err:
            # Refused rather than replaced: a client that sends an id wants to find its answer by it, and a
            # silently generated one would break that without telling anyone. The answer carries a fresh id.
            return HTTPError(400, "bad_request_id", f"header X-Request-Id must be UTF-8 text; byte "
                             f"{rid[err.start:err.start + 1]!r} at position {err.start} is not")
    return None


def outcome_of(err: HTTPError) -> str:
    """The outcome an error answer is counted under."""
    if err.code == "disconnected":
        return "disconnected"
    return {400: "bad_input", 413: "too_large"}.get(err.status, err.code if err.code in OUTCOMES else "error")


def client_gone(receive) -> bool:
    """Whether the client has gone (http.disconnect) without waiting: receive() is stepped once by hand.

    After the whole body has been read, receive() answers at once only when the connection is gone; otherwise
    it would wait (until the response is sent), and the step is abandoned (close()). No task and no loop
    iteration, unlike racing a receive() task. A dropped answer is then counted as 'disconnected', not 'ok':
    uvicorn silently drops what the app sends on a disconnected connection. An answer that needed no await
    (--no-model, a cache hit) can be checked before uvicorn has run connection_lost, and still counts 'ok'."""
    waiting = receive()
    try:
        waiting.send(None)
    except StopIteration as done:
        return isinstance(done.value, dict) and done.value.get("type") == "http.disconnect"
    except Exception:  # noqa: BLE001 - a receive() that cannot be stepped: assume the client is there
        return False
    waiting.close()
    return False


def error_body(err: HTTPError) -> tuple[int, bytes, list]:
    headers = []
    if err.retry_after_s is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(err.retry_after_s))).encode()))  # whole seconds
    if err.status in (408, 413) or err.code == "unsupported_upgrade":
        headers.append((b"connection", b"close"))  # the rest of the body, or of the stream, is not read
    return err.status, json.dumps(error_answer(err)).encode(), headers


async def send_answer(send, status: int, body: bytes, rid: bytes, extra: list | None = None) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), (b"x-request-id", rid)]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


async def send_error(send, err: HTTPError, rid: bytes) -> None:
    status, body, extra = error_body(err)
    await send_answer(send, status, body, rid, extra)


async def read_body(receive, declared: bytes | None, limit: int, timeout_s: float, service) -> bytes:
    """The body; HTTPError 413 beyond the limit, 408 when it takes longer than timeout_s (503 once draining)."""
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPError(413, "too_large", f"Content-Length {declared.decode(errors='replace')} exceeds the "
                        f"{limit}-byte limit")
    chunks, size, more = [], 0, True
    try:
        async with asyncio.timeout(timeout_s) as timeout:
            service.slow_reads.add(timeout)
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise HTTPError(400, "disconnected", "client disconnected before sending the whole body")
                chunk, more = message.get("body", b""), message.get("more_body", False)
                size += len(chunk)
                if size > limit:
                    raise HTTPError(413, "too_large", f"body exceeds the {limit}-byte limit")
                chunks.append(chunk)
    except TimeoutError:
        if service.status == "draining":
            raise HTTPError(503, "draining", "server is shutting down; the body was not complete",
                            retry_after_s=1) from None
        raise HTTPError(408, "timeout", f"body not complete within {timeout_s:g} s ({size} bytes arrived)") from None
    finally:
        service.slow_reads.discard(timeout)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
