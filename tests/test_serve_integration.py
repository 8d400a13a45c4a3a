"""The real server in a subprocess on a free loopback port (ServerProcess): health, predict with the trained
model, metrics, the bad-input matrix over HTTP, 429 at a tiny queue limit, graceful stop, no orphans."""
import asyncio
import json
import os
import socket
import threading
import time

import httpx
import numpy as np
import psutil
import pytest

from labkit.serve import ServeConfig, ServerProcess

GOOD = {"inputs": ["the food was not good"]}


@pytest.fixture(scope="module")
def server():
    with ServerProcess(ServeConfig(), startup_timeout_s=120) as s:  # trains once (~5-10 s), then cached
        yield s


def group_alive(pgid: int, wait_s: float = 10.0) -> bool:
    """Whether any live (non-zombie) process of the group remains, after waiting up to wait_s for it to go."""
    deadline = time.monotonic() + wait_s
    while True:
        alive = []
        for proc in psutil.process_iter(["pid", "status"]):
            try:
                if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except (ProcessLookupError, psutil.Error):
                pass
        if not alive or time.monotonic() > deadline:
            return bool(alive)
        time.sleep(0.1)


def test_health_predict_and_metrics(server):
    with httpx.Client(base_url=server.url, timeout=10) as client:
        health = client.get("/health")
        texts = ["the food was good", "the food was not good", "the room was bad but the view was superb",
                 "the music was great but the ending was not very good"]
        r = client.post("/predict", json={"inputs": texts})
        metrics = client.get("/metrics").text
    assert health.status_code == 200
    body = health.json()
    assert {k: body[k] for k in ("status", "model", "pid", "in_flight", "admission_limit")} == \
        {"status": "ok", "model": "text", "pid": server.pid, "in_flight": 0, "admission_limit": 256}
    assert set(body["gate"]) >= {"held", "resumed", "expired", "retries_held", "active"}
    body = r.json()
    assert r.status_code == 200 and body["labels"] == [1, 0, 1, 0]  # the trained GRU reads word order
    assert r.headers["x-request-id"] == body["request_id"] and body["batch_size"] == 4
    assert np.allclose(np.sum(body["probabilities"], axis=1), 1, atol=1e-5)
    assert 'labkit_requests_total{outcome="ok"}' in metrics and "labkit_batch_size_bucket" in metrics


BAD = [
    (b'{"inputs": [', 400, "malformed_json"),
    (b'{"inputs": []}', 400, "empty_inputs"),
    (b'{"inputs": [3.5]}', 400, "wrong_dtype"),
    (b'{"inputs": ["ok"], "extra": 1}', 400, "unknown_field"),
    (json.dumps({"inputs": ["ok"] * 65}).encode(), 400, "too_many_inputs"),
    (b'{"inputs": ["ok"], "deadline_ms": Infinity}', 400, "bad_field"),
    (b"[1, 2, 3]", 400, "wrong_type"),
]


def test_bad_input_matrix_over_http_on_one_connection(server):
    with httpx.Client(base_url=server.url, timeout=10) as client:  # keep-alive: every bad one, then a good one
        for body, status, code in BAD:
            bad = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
            assert bad.status_code == status and bad.json()["code"] == code, (body, bad.text)
            assert client.post("/predict", json=GOOD).status_code == 200


def test_oversized_body_is_413_and_the_server_keeps_serving(server):
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 5000000\r\n\r\n" + b"{" * 1000)  # claims 5 MB, the limit is 1 MB
        chunks = []
        while chunk := sock.recv(65536):  # headers and body may arrive in separate segments; the server closes
            chunks.append(chunk)
        reply = b"".join(chunks).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413") and "too_large" in reply
    assert httpx.post(server.url + "/predict", json=GOOD, timeout=10).status_code == 200


def test_short_bounded_load_accounts_for_every_request(server):
    async def load(n: int = 120, users: int = 16):
        statuses: list[int] = []
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            async def user(u: int):
                for i in range(u, n, users):
                    r = await client.post("/predict", json={"inputs": [f"the plot was {'not ' * (i % 2)}good"]})
                    statuses.append(r.status_code)
                    if r.status_code == 200:
                        assert r.json()["labels"] == [1 - i % 2]
            await asyncio.gather(*(user(u) for u in range(users)))
        return statuses
    statuses = asyncio.run(load())
    assert len(statuses) == 120 and statuses.count(200) == 120


def test_tiny_queue_limit_429_then_graceful_stop():
    config = ServeConfig(queue_limit=2, slow_ms=300, max_batch=1)
    with ServerProcess(config, startup_timeout_s=120) as server:
        async def burst():
            async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
                return await asyncio.gather(*(client.post("/predict", json=GOOD) for _ in range(8)))
        results = asyncio.run(burst())
        codes = [r.status_code for r in results]
        assert len(codes) == 8 and set(codes) <= {200, 429} and codes.count(429) >= 1 and codes.count(200) >= 2
        rejected = next(r for r in results if r.status_code == 429)
        assert rejected.json()["code"] == "queue_full" and int(rejected.headers["retry-after"]) >= 1

        answer: list = []
        request = threading.Thread(target=lambda: answer.append(httpx.post(server.url + "/predict", json=GOOD,
                                                                           timeout=20)))
        request.start()
        while "labkit_in_flight 1.0" not in httpx.get(server.url + "/metrics").text:
            pass  # wait until the request is admitted
        pgid = server.pid
        server.stop()  # SIGTERM while that request is in flight
        request.join(20)
        assert answer and answer[0].status_code == 200  # graceful: in-flight requests are answered
        assert not server.alive and not group_alive(pgid)


def test_process_workers_match_thread_workers_and_leave_nothing_behind(server):
    body = {"inputs": ["the staff was rude", "the view was not dull", "the food was nice but the price was bad"]}
    thread_probs = httpx.post(server.url + "/predict", json=body, timeout=10).json()["probabilities"]
    with ServerProcess(ServeConfig(workers="process"), startup_timeout_s=120) as proc_server:
        children = psutil.Process(proc_server.pid).children(recursive=True)
        probs = httpx.post(proc_server.url + "/predict", json=body, timeout=20).json()["probabilities"]
        assert proc_server.rss_mb() > 100  # server + a model process, each with its own torch
        pgid = proc_server.pid
        proc_server.kill()  # SIGKILL the whole group: a replica dying
        assert not proc_server.alive
    assert np.allclose(probs, thread_probs, atol=1e-5)
    assert len(children) >= 1 and not group_alive(pgid)  # the model process died with the server


def test_failed_start_raises_with_the_log_tail(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(RuntimeError, match="no checkpoint"):
        ServerProcess(ServeConfig(checkpoint=str(missing)), startup_timeout_s=120).start()



def test_onnx_engine_server_answers_like_the_eager_one(server):
    """The real weights exported and served on ONNX Runtime (this also caches the export for later servers)."""
    body = {"inputs": ["the staff was rude", "the view was not dull", "good", "the food was nice but the price was bad"]}
    eager = httpx.post(server.url + "/predict", json=body, timeout=10).json()
    with ServerProcess(ServeConfig(engine="onnx"), startup_timeout_s=240) as onnx_server:  # first export ~20 s
        answer = httpx.post(onnx_server.url + "/predict", json=body, timeout=20).json()
    assert answer["labels"] == eager["labels"]
    assert np.allclose(answer["probabilities"], eager["probabilities"], atol=1e-5)
