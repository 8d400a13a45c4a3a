"""Hostile and broken requests, sent over a raw socket, and what the server answers to each: the bad-input table.

Every answer is JSON with a status and a short code, whether the app refused the request (it parsed the HTTP and
read the body), the transport did (headers too big, a parser error: uvicorn would answer plain text) or the
admission gate. Taught in 09_async_serving (§7c).
"""
from __future__ import annotations

import json
import socket

GOOD = b'{"inputs": ["the food was not good"]}'


def _post(body: bytes, *headers: bytes, length: bytes | None = None, tail: bytes = b"") -> bytes:
    lines = [b"POST /predict HTTP/1.1", b"Host: x", b"Content-Type: application/json",
             b"Content-Length: " + (length if length is not None else b"%d" % len(body)), *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body + tail


CASES: dict[str, bytes] = {
    "malformed JSON": _post(b'{"inputs": ['),
    "inputs not a list": _post(b'{"inputs": "the food"}'),
    "unknown field": _post(b'{"inputs": ["a"], "temperature": 2}'),
    "empty inputs": _post(b'{"inputs": []}'),
    "too many inputs": _post(json.dumps({"inputs": ["a"] * 65}).encode()),
    "body over the limit": _post(b"", length=b"2000000"),
    "X-Request-Id not UTF-8": _post(GOOD, b"X-Request-Id: \xff\xfe"),
    "Upgrade: h2c (curl --http2)": _post(GOOD, b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c",
                                         b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA"),
    "Content-Length not a number": _post(GOOD, length=b"12abc"),
    "broken chunked encoding": (b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                b"zz\r\n" + GOOD + b"\r\n0\r\n\r\n"),
    "garbage request line": b"HELLO THERE\r\n\r\n",
    "headers over 64 KiB": _post(GOOD, b"X-Big: " + b"a" * 70_000),
}


def _answer(port: int, request: bytes, timeout_s: float) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(request)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    break
        except (socket.timeout, ConnectionResetError):
            pass
    return data


def bad_input_table(port: int, timeout_s: float = 5.0):
    """One row per case in CASES: the status, whether the answer is JSON, its code, and its message."""
    import pandas as pd

    rows = []
    for case, request in CASES.items():
        head, _, body = _answer(port, request, timeout_s).partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        rows.append({"case": case, "status": status, "json": isinstance(payload, dict),
                     "code": payload.get("code", "") if isinstance(payload, dict) else "",
                     "message": (payload.get("error", "") if isinstance(payload, dict) else body.decode(
                         "utf-8", "replace"))[:90]})
    return pd.DataFrame(rows).set_index("case")
