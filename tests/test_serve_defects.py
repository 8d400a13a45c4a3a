"""Smaller defects of the model server found by fuzzing it (issue 13), one test each: every one failed before
its fix. In-process where the app alone decides; over a raw socket to a real server (uvicorn + httptools, the
way `labkit serve` runs) where the HTTP layer is part of the story."""
import socket
import time

import httpx
import numpy as np
import pytest

from labkit.serve import ServeConfig, ServerProcess
from labkit.serve.preprocessing import IMAGE_SHAPE, InputError, make_preprocessor
from labkit.serve.telemetry import scrape_metrics

BODY = b'{"inputs": ["the food was not good"]}'


@pytest.fixture(scope="module")
def server():
    with ServerProcess(ServeConfig(), startup_timeout_s=120) as s:  # the trained text model, cached weights
        yield s


def raw(server, request: bytes, timeout_s: float = 5.0) -> bytes:
    """Send `request` as is on a fresh connection; everything the server writes until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout_s) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except socket.timeout:  # a kept-alive connection: the answer has come, nothing more will
            pass
    return b"".join(chunks)


def post(body: bytes, *headers: bytes, tail: bytes = b"") -> bytes:
    """A raw POST /predict: the given extra header lines, an exact Content-Length, then `tail` after the body."""
    lines = [b"POST /predict HTTP/1.1", b"Host: x", b"Content-Type: application/json",
             b"Content-Length: %d" % len(body), *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body + tail


def outcomes(server) -> dict[str, float]:
    """{outcome: count} of labkit_requests_total."""
    m = scrape_metrics(server.url)
    return {k.split('"')[1]: v for k, v in m.items() if k.startswith("labkit_requests_total{")}


def counted_once(server, before: dict, wait_s: float = 5.0) -> str:
    """The one outcome that grew, by exactly one (fails if none or several did). Waits up to wait_s for the
    count: the app may still be answering a request whose client uvicorn has already answered itself."""
    deadline = time.monotonic() + wait_s
    while (after := outcomes(server)) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # and a moment more: a second count for the same request would show here
    after = outcomes(server)
    grew = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert len(grew) == 1 and list(grew.values()) == [1], grew
    return next(iter(grew))


# ------------------------------------------------------------------ X-Request-Id that is not UTF-8
def test_non_utf8_request_id_is_a_json_400_naming_the_header_counted_once_as_bad_input(server):
    before = outcomes(server)
    reply = raw(server, post(BODY, b"X-Request-Id: ab\xffcd", b"Connection: close"))
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), reply
    assert b'"code": "bad_request_id"' in body and b"X-Request-Id" in body and b"UTF-8" in body
    assert b"\xff" not in head  # the bad id is not echoed: the answer carries a generated one
    assert counted_once(server, before) == "bad_input"


# ------------------------------------------------------------------ image inputs: overflow and booleans
def image() -> list:
    return np.full(IMAGE_SHAPE, 0.5).tolist()


def _with(value: object) -> list:
    """A valid image with one pixel set to `value`."""
    x = image()
    x[1][2][3] = value
    return x


def test_a_pixel_beyond_float32_is_out_of_range_naming_the_limit_not_nan():
    with pytest.raises(InputError) as err:
        make_preprocessor("image")([image(), _with(1e39)])
    assert err.value.code == "out_of_range" and "NaN" not in str(err.value)
    assert "inputs[1]" in str(err.value) and "float32" in str(err.value) and "3.4e+38" in str(err.value)


@pytest.mark.parametrize("value", [True, False])
def test_a_single_boolean_among_floats_is_refused_like_an_all_boolean_image(value):
    preprocess = make_preprocessor("image")
    with pytest.raises(InputError) as all_bool:
        preprocess([np.full(IMAGE_SHAPE, value).tolist()])
    with pytest.raises(InputError) as one_bool:
        preprocess([image(), _with(value)])
    assert one_bool.value.code == all_bool.value.code == "wrong_dtype"
    assert "inputs[1]" in str(one_bool.value) and "bool" in str(one_bool.value)
    assert "bool" in str(all_bool.value)
    assert preprocess([_with(1), _with(0.25)]).shape == (2, *IMAGE_SHAPE)  # ints and floats still served


# ------------------------------------------------------------------ bytes after the declared body
def test_bytes_after_the_body_get_the_protocol_400_and_are_not_counted_ok(server):
    """httptools parses the body, hands the request to the app, then fails on the trailing bytes as the start of
    a next request: the transport writes a JSON 400 (bad_http, counted as bad input) and closes. The app's answer
    to the first request is then dropped by uvicorn (send() on a disconnected cycle returns silently), so the
    client gets only that 400. The app sees the disconnect before it answers and counts the request as
    'disconnected', never 'ok'."""
    before = outcomes(server)
    reply = raw(server, post(b'{"inputs": ["the staff was rude and the view was dull"]}', tail=b"garbage"))
    assert reply.startswith(b"HTTP/1.1 400") and b'"bad_http"' in reply and reply.count(b"HTTP/1.1") == 1
    time.sleep(0.5)
    after = outcomes(server)
    grew = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert grew == {"disconnected": 1, "bad_input": 1}, grew
    assert httpx.post(server.url + "/predict", content=BODY, timeout=10).status_code == 200


# ------------------------------------------------------------------ curl --http2 on plain HTTP (h2c upgrade)
H2C = (b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c", b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA")


def test_h2c_upgrade_is_a_json_400_naming_the_upgrade_and_the_connection_closes(server):
    before = outcomes(server)
    reply = raw(server, post(BODY, *H2C))
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"connection: close" in head.lower(), reply
    assert b'"code": "unsupported_upgrade"' in body and b"h2c" in body and b"malformed_json" not in body
    assert counted_once(server, before) == "bad_input"
    assert httpx.post(server.url + "/predict", content=BODY, timeout=10).status_code == 200


def test_every_bad_request_gets_a_json_answer_with_a_code_parser_errors_included(server):
    """uvicorn answers HTTP parser errors in plain text; the transport answers them in JSON and counts them."""
    from labkit.serve.probes import CASES, bad_input_table

    before = scrape_metrics(server.url)['labkit_requests_total{outcome="bad_input"}']
    table = bad_input_table(server.port)
    assert list(table.index) == list(CASES) and table["json"].all(), table
    assert set(table["status"]) <= {400, 413, 431}
    assert (table.loc[["Content-Length not a number", "broken chunked encoding", "garbage request line"], "code"]
            == "bad_http").all()
    after = scrape_metrics(server.url)['labkit_requests_total{outcome="bad_input"}']
    assert after - before == (table["status"] == 400).sum()  # parser errors counted like the app's own 400s
