"""Ray Serve smoke test on loopback: start, single and concurrent (batched) requests, bad input, shutdown.

Skipped only when Ray itself cannot start on this machine (RayStartError: its raylet can time out waiting
for its agents on an overloaded box) or LABKIT_SKIP_RAY=1; any failure of the app itself fails the test.
"""
import asyncio
import json
import urllib.error
import urllib.request

import aiohttp
import pytest

from labkit.serve import ServeConfig

pytest.importorskip("ray")
from labkit.serve.ray_app import RayServe  # noqa: E402

CONFIG = ServeConfig(max_batch=16, max_wait_ms=50.0, threads=1)   # a long wait: concurrent requests batch


@pytest.fixture(scope="module")
def ray_server(start_ray):
    return start_ray(RayServe(CONFIG, num_replicas=1, num_cpus=2))


def _post(url: str, payload: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_one_request_gets_labels_and_probabilities(ray_server):
    status, body = _post(ray_server.predict_url, {"inputs": ["the food was not good", "a great film"]})
    assert status == 200
    assert len(body["labels"]) == 2 and all(abs(sum(p) - 1) < 1e-4 for p in body["probabilities"])
    assert body["batch_size"] >= 2


def test_concurrent_requests_are_batched(ray_server):
    async def burst(n: int) -> list[dict]:
        async with aiohttp.ClientSession() as session:
            async def one(i):
                async with session.post(ray_server.predict_url, json={"inputs": [f"review number {i}"]}) as r:
                    assert r.status == 200, await r.text()
                    return await r.json()
            return await asyncio.gather(*(one(i) for i in range(n)))

    answers = asyncio.run(burst(12))
    assert len(answers) == 12 and max(a["batch_size"] for a in answers) > 1


def test_bad_input_is_a_400_naming_the_field(ray_server):
    status, body = _post(ray_server.predict_url, {"inputs": "not a list"})
    assert status == 400 and "inputs" in body["error"]


def test_too_many_replicas_for_the_cpus_is_an_error():
    with pytest.raises(ValueError, match="num_cpus"):
        RayServe(ServeConfig(threads=2), num_replicas=2, num_cpus=2)
