"""The ASGI app in-process (httpx.ASGITransport): API, bad-input matrix, admission, deadline, cache, metrics.

An untrained model stands in for the served one (the real, trained one is exercised in
test_serve_integration.py), so these tests need no training and run in seconds.
"""
import asyncio
import json
import math
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from labkit.serve import ServeConfig
from labkit.serve.app import create_app
from labkit.serve.lifecycle import LoadedModel, build_model
from labkit.serve.preprocessing import IMAGE_SHAPE, make_preprocessor

GOOD = {"inputs": ["the food was not good"]}


def fake_loader(name: str = "text"):
    def load() -> LoadedModel:
        torch.manual_seed(0)  # the same untrained weights in every app
        preprocess = make_preprocessor(name)
        vocab_size = len(preprocess.vocab) if name == "text" else None
        return LoadedModel(name, build_model(name, vocab_size).eval(), preprocess, Path("untrained"), math.nan, 0.0)
    return load


def serve(config: ServeConfig, test, name: str = "text"):
    """Run `test(client, service)` against a started app; stop it afterwards."""
    async def main():
        app = create_app(config, loader=None if config.no_model else fake_loader(name))
        service = app.state.service
        await service.start()
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await test(client, service)
        finally:
            await service.stop()
    return asyncio.run(asyncio.wait_for(main(), timeout=60))


def image(value: float = 0.5) -> list:
    return np.full(IMAGE_SHAPE, value).tolist()


# ---------------------------------------------------------------------------------- the API


def test_predict_returns_labels_probabilities_and_request_id():
    async def test(client, service):
        r = await client.post("/predict", json={"inputs": ["the food was good", "the plot was bad"]},
                              headers={"X-Request-Id": "abc-1"})
        return r
    r = serve(ServeConfig(), test)
    body = r.json()
    assert r.status_code == 200 and r.headers["x-request-id"] == "abc-1" and body["request_id"] == "abc-1"
    assert len(body["labels"]) == 2 and body["batch_size"] == 2 and body["cached"] == [False, False]
    probs = np.array(body["probabilities"])
    assert probs.shape == (2, 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert body["labels"] == probs.argmax(axis=1).tolist()


def test_batched_answer_equals_one_at_a_time():
    texts = ["the food was good", "the plot was not bad", "the view is dull but the staff was nice"]

    async def test(client, service):
        alone = [(await client.post("/predict", json={"inputs": [t]})).json()["probabilities"][0] for t in texts]
        together = await asyncio.gather(*(client.post("/predict", json={"inputs": [t]}) for t in texts))
        return alone, [r.json()["probabilities"][0] for r in together]
    alone, together = serve(ServeConfig(max_wait_ms=20), test)
    assert np.allclose(alone, together, atol=1e-5)


def test_health_reports_loading_then_ok():
    async def main():
        app = create_app(ServeConfig(), loader=fake_loader())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            before = await client.get("/health")
            refused = await client.post("/predict", json=GOOD)
            await app.state.service.start()
            after = await client.get("/health")
        await app.state.service.stop()
        return before, refused, after
    before, refused, after = asyncio.run(main())
    assert before.status_code == 503 and before.json()["status"] == "loading"
    assert refused.status_code == 503 and refused.json()["code"] == "loading" and "retry-after" in refused.headers
    assert after.status_code == 200 and after.json()["status"] == "ok" and after.json()["model"] == "text"
    assert "x-request-id" in after.headers


def test_no_model_answers_fixed_uniform_probabilities():
    async def test(client, service):
        return (await client.post("/predict", json={"inputs": ["a", "b", "c"]})).json()
    body = serve(ServeConfig(no_model=True), test)
    assert body["probabilities"] == [[0.5, 0.5]] * 3 and body["labels"] == [0, 0, 0]


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_worker_modes_give_the_same_answer(mode):
    async def test(client, service):
        return (await client.post("/predict", json=GOOD)).json()["probabilities"]
    assert np.allclose(serve(ServeConfig(workers=mode), test), serve(ServeConfig(workers="thread"), test))


def test_unknown_path_and_method_are_json_errors():
    async def test(client, service):
        return await client.get("/nope"), await client.get("/predict")
    missing, wrong_method = serve(ServeConfig(), test)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert wrong_method.status_code == 405 and "x-request-id" in wrong_method.headers


# ---------------------------------------------------------------------------------- bad input

TEXT_BAD = [
    (b'{"inputs": ["ok"', 400, "malformed_json"),
    (b"\xff\xfe not utf-8", 400, "malformed_json"),
    (b'["the food"]', 400, "wrong_type"),
    (b"{}", 400, "missing_field"),
    (b'{"inputs": "the food was good"}', 400, "wrong_type"),
    (b'{"inputs": []}', 400, "empty_inputs"),
    (json.dumps({"inputs": ["x"] * 65}).encode(), 400, "too_many_inputs"),
    (b'{"inputs": ["ok"], "temperature": 2}', 400, "unknown_field"),
    (b'{"inputs": [42]}', 400, "wrong_dtype"),
    (b'{"inputs": ["ok", null]}', 400, "wrong_dtype"),
    (b'{"inputs": ["   "]}', 400, "empty_text"),
    (json.dumps({"inputs": ["word " * 500]}).encode(), 400, "text_too_long"),
    (b'{"inputs": ["ok"], "deadline_ms": -5}', 400, "bad_field"),
    (b'{"inputs": ["ok"], "deadline_ms": NaN}', 400, "bad_field"),
    (b'{"inputs": ["ok"], "deadline_ms": "soon"}', 400, "bad_field"),
    (b'{"inputs": ["' + b"a" * 5000 + b'"]}', 413, "too_large"),
]


@pytest.mark.parametrize("body,status,code", TEXT_BAD, ids=[c for _, _, c in TEXT_BAD])
def test_bad_text_input_is_a_clear_4xx_and_the_server_keeps_serving(body, status, code):
    async def test(client, service):
        bad = await client.post("/predict", content=body, headers={"Content-Type": "application/json"})
        good = await client.post("/predict", json=GOOD)
        return bad, good
    bad, good = serve(ServeConfig(max_body_bytes=4096), test)
    assert bad.status_code == status and bad.json()["code"] == code, bad.text
    assert bad.json()["error"] and "x-request-id" in bad.headers
    assert good.status_code == 200


IMAGE_BAD = [
    ({"inputs": [[["a"] * 32] * 32] * 3}, "wrong_dtype"),
    ({"inputs": ["a picture"]}, "wrong_dtype"),
    ({"inputs": [np.zeros((3, 16, 16)).tolist()]}, "wrong_shape"),
    ({"inputs": [np.zeros((32, 32, 3)).tolist()]}, "wrong_shape"),
    ({"inputs": [[[[0.0] * 32] * 31 + [[0.0] * 5]] * 3]}, "wrong_shape"),  # ragged
    ({"inputs": [image(2.0)]}, "out_of_range"),
]


@pytest.mark.parametrize("payload,code", IMAGE_BAD, ids=[c for _, c in IMAGE_BAD])
def test_bad_image_input_is_named(payload, code):
    async def test(client, service):
        return await client.post("/predict", json=payload), await client.post("/predict", json={"inputs": [image()]})
    bad, good = serve(ServeConfig(model="image"), test, name="image")
    assert bad.status_code == 400 and bad.json()["code"] == code, bad.text
    assert good.status_code == 200 and len(good.json()["probabilities"][0]) == 12


def test_nan_pixels_are_rejected():
    nan_image = image()
    nan_image[1][2][3] = float("nan")

    async def test(client, service):
        body = json.dumps({"inputs": [image(), nan_image]}).encode()  # json.dumps writes the NaN literal
        return await client.post("/predict", content=body)
    r = serve(ServeConfig(model="image"), test, name="image")
    assert r.status_code == 400 and r.json()["code"] == "not_finite" and "inputs[1]" in r.json()["error"]


def test_body_larger_than_its_content_length_claims_is_413():
    """The limit holds for the bytes actually read, not just the Content-Length header."""
    async def main():
        app = create_app(ServeConfig(max_body_bytes=100), loader=fake_loader())
        await app.state.service.start()
        chunks = [{"type": "http.request", "body": b"x" * 60, "more_body": True}] * 3
        sent: list = []

        async def receive():
            return chunks.pop() if chunks else {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)
        scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [(b"content-length", b"10")],
                 "query_string": b"", "root_path": "", "scheme": "http", "server": ("t", 80)}
        await app(scope, receive, send)
        await app.state.service.stop()
        return sent
    start, body = asyncio.run(main())
    assert start["status"] == 413 and json.loads(body["body"])["code"] == "too_large"


# ---------------------------------------------------------------------------------- admission, deadline, errors


def test_queue_limit_answers_429_with_retry_after_at_once():
    async def test(client, service):
        results = await asyncio.gather(*(client.post("/predict", json=GOOD) for _ in range(6)))
        return results, (await client.post("/predict", json=GOOD)).status_code
    results, after = serve(ServeConfig(queue_limit=2, slow_ms=100), test)
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) >= 2 and codes.count(429) >= 1 and set(codes) <= {200, 429}
    rejected = next(r for r in results if r.status_code == 429)
    assert rejected.json()["code"] == "queue_full" and int(rejected.headers["retry-after"]) >= 1
    assert after == 200  # capacity came back


def test_deadline_that_cannot_be_met_is_rejected_early_with_503():
    async def test(client, service):
        await client.post("/predict", json=GOOD)  # measures the seconds per row
        service.batcher.per_row_s = 1.0           # pretend the model is very slow...
        slow = asyncio.create_task(client.post("/predict", json=GOOD))
        await asyncio.sleep(0.02)                 # ...and one request is already being served
        rejected = await client.post("/predict", json={**GOOD, "deadline_ms": 50})
        relaxed = await client.post("/predict", json={**GOOD, "deadline_ms": 60_000})
        return rejected, relaxed, await slow
    rejected, relaxed, slow = serve(ServeConfig(slow_ms=200), test)
    assert rejected.status_code == 503 and rejected.json()["code"] == "deadline"
    assert "retry-after" in rejected.headers
    assert relaxed.status_code == 200 and slow.status_code == 200


def test_failed_forward_fails_its_batch_with_500_and_serving_goes_on():
    async def test(client, service):
        real_run, calls = service.worker.run, []

        async def flaky(x):
            calls.append(len(x))
            if len(calls) == 1:
                raise RuntimeError("CUDA out of memory (simulated)")
            return await real_run(x)
        service.batcher.run = flaky
        return await client.post("/predict", json=GOOD), await client.post("/predict", json=GOOD)
    failed, ok = serve(ServeConfig(), test)
    assert failed.status_code == 500 and "simulated" in failed.json()["error"]
    assert ok.status_code == 200


# ---------------------------------------------------------------------------------- cache and metrics


def test_cache_hit_skips_the_batcher_and_is_counted():
    async def test(client, service):
        first = (await client.post("/predict", json={"inputs": ["the food was good"]})).json()
        second = (await client.post("/predict", json={"inputs": ["The food was GOOD", "the plot was bad"]})).json()
        metrics = (await client.get("/metrics")).text
        return first, second, metrics
    first, second, metrics = serve(ServeConfig(cache=True), test)
    assert first["cached"] == [False] and second["cached"] == [True, False]
    assert second["batch_size"] == 1  # only the miss went to the model
    assert np.allclose(first["probabilities"][0], second["probabilities"][0])
    assert "labkit_cache_hits_total 1.0" in metrics and "labkit_cache_misses_total 2.0" in metrics


def _sample(metrics: str, name: str) -> float:
    line = next(line for line in metrics.splitlines() if line.startswith(name + " ") or line.startswith(name + "{"))
    return float(line.rsplit(" ", 1)[1])


def test_metrics_count_outcomes_latency_and_batch_sizes():
    async def test(client, service):
        await asyncio.gather(*(client.post("/predict", json=GOOD) for _ in range(3)))
        await client.post("/predict", content=b"{oops")
        return await client.get("/metrics")
    r = serve(ServeConfig(max_wait_ms=20), test)
    text = r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert _sample(text, 'labkit_requests_total{outcome="ok"}') == 3
    assert _sample(text, 'labkit_requests_total{outcome="bad_input"}') == 1
    assert _sample(text, "labkit_in_flight") == 0  # every inc was matched by a dec
    assert _sample(text, "labkit_request_latency_seconds_count") == 4
    assert _sample(text, "labkit_batch_size_sum") == 3  # three rows, however they were batched


def test_two_apps_in_one_process_have_separate_metrics():
    async def test(client, service):
        await client.post("/predict", json=GOOD)
        return (await client.get("/metrics")).text
    for _ in range(2):  # a shared registry would raise "Duplicated timeseries" or count 2 the second time
        assert _sample(serve(ServeConfig(), test), 'labkit_requests_total{outcome="ok"}') == 1


def test_config_round_trips_through_flags():
    import argparse

    from labkit.serve.cli import add_arguments
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for config in (ServeConfig(), ServeConfig(no_model=True, batching=False, cache=True, max_wait_ms=0.5,
                                              workers="process", checkpoint="w.pt", model="image")):
        assert ServeConfig.from_args(parser.parse_args(config.to_args())) == config
    with pytest.raises(ValueError, match="max_batch"):
        ServeConfig(max_batch=0)
    with pytest.raises(ValueError, match="workers"):
        ServeConfig(workers="gpu")


def test_gc_freeze_and_gc_pause_metric():
    """After start-up the server freezes what start-up allocated (short full collections) and times every
    collector pass in labkit_gc_pause_seconds; --no-gc-freeze leaves the collector alone."""
    import gc

    async def test(client, service):
        frozen = gc.get_freeze_count()
        gc.collect()  # one full pass, observed by the server's gc callback
        text = (await client.get("/metrics")).text
        return frozen, text

    frozen, text = serve(ServeConfig(), test)
    assert frozen > 0 and gc.get_freeze_count() == 0  # frozen while serving, thawed by stop()
    assert 'labkit_gc_pause_seconds_count{generation="2"}' in text
    frozen, _ = serve(ServeConfig(gc_freeze=False), test)
    assert frozen == 0
    assert ServeConfig(gc_freeze=False).to_args() == ["--no-gc-freeze"]


def echo_routes(service):
    """An extension for the test below: GET /echo answers the service's model name."""
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    return [Route("/echo", lambda request: PlainTextResponse(service.config.model))]


def test_extensions_add_routes_and_bad_names_are_clear():
    from starlette.testclient import TestClient
    from labkit.serve.app import create_app
    from labkit.serve.config import ServeConfig
    app = create_app(ServeConfig(no_model=True, extensions=f"{__name__}:echo_routes"))
    with TestClient(app) as client:
        assert client.get("/echo").text == "text"
    with pytest.raises(ValueError, match="package.module:function"):
        create_app(ServeConfig(no_model=True, extensions="no_colon_here"))
    assert ServeConfig(extensions="a:b").to_args() == ["--extensions", "a:b"]


def test_deadline_is_kept_or_the_answer_says_it_was_missed():
    """deadline_ms 0.001 on an idle server: refused up front (it was answered 200 in 3 ms before); a deadline
    that passes during the forward gives a 200 marked deadline_met: false, counted as late."""
    async def test(client, service):
        await client.post("/predict", json=GOOD)  # measures the seconds per row
        tiny = [await client.post("/predict", json={**GOOD, "deadline_ms": 0.001}) for _ in range(5)]
        service.batcher.per_row_s = 1e-9          # the estimate says yes; the 50 ms forward says no
        late = await client.post("/predict", json={**GOOD, "deadline_ms": 5})
        roomy = await client.post("/predict", json={**GOOD, "deadline_ms": 60_000})
        return tiny, late, roomy, service.metrics.late._value.get()
    tiny, late, roomy, late_count = serve(ServeConfig(slow_ms=50), test)
    assert all(r.status_code == 503 and r.json()["code"] == "deadline" for r in tiny)
    assert late.status_code == 200 and late.json()["deadline_met"] is False and late_count == 1
    assert roomy.json()["deadline_met"] is True and "deadline_met" not in GOOD
