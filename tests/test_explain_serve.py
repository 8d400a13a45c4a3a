"""POST /explain through the extension hook: answers, bounded admission (429 at once), request protocol."""
import asyncio
import math
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from labkit.serve import ServeConfig
from labkit.serve.app import create_app
from labkit.serve.explaining import ExplainConfig, image_perturbations, text_perturbations
from labkit.serve.lifecycle import LoadedModel, build_model
from labkit.serve.preprocessing import IMAGE_SHAPE, make_preprocessor


def serve(config: ServeConfig, test, name: str = "text"):
    """Run `test(client, service)` against a started app with an untrained model; stop it afterwards."""
    def load() -> LoadedModel:
        torch.manual_seed(0)
        prep = make_preprocessor(name)
        model = build_model(name, len(prep.vocab) if name == "text" else None).eval()
        return LoadedModel(name, model, prep, Path("untrained"), math.nan, 0.0)

    async def main():
        app = create_app(config, loader=load)
        await app.state.service.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
                return await test(client, app.state.service)
        finally:
            await app.state.service.stop()
    return asyncio.run(asyncio.wait_for(main(), timeout=60))


def image(value: float) -> list:
    return np.full(IMAGE_SHAPE, value).tolist()

EXT = ServeConfig(extensions="labkit.serve.explaining:routes", max_wait_ms=1)


def test_explain_answers_one_score_per_word_that_matches_predict():
    async def test(client, service):
        e = await client.post("/explain", json={"inputs": ["the food was not good"]}, headers={"X-Request-Id": "e-1"})
        p = await client.post("/predict", json={"inputs": ["the food was not good"]})
        return e, p.json()
    e, p = serve(EXT, test)
    body = e.json()
    assert e.status_code == 200 and body["request_id"] == "e-1" and body["method"] == "occlusion"
    assert body["tokens"] == [["the", "food", "was", "not", "good"]] and len(body["attributions"][0]) == 5
    assert body["rows_forwarded"] == 6 and body["labels"] == p["labels"]
    assert np.allclose(body["probabilities"], p["probabilities"], atol=1e-5)


def test_explain_on_the_image_model_scores_each_patch():
    async def test(client, service):
        return await client.post("/explain", json={"inputs": [image(0.4)]})
    r = serve(EXT.replace(model="image"), test, name="image")
    assert r.status_code == 200 and len(r.json()["attributions"][0]) == 16 and r.json()["rows_forwarded"] == 17


@pytest.mark.parametrize("body, code", [(b"{", "malformed_json"), (b'{"inputs": []}', "empty_inputs"),
                                        (b'{"inputs": ["a", "b", "c", "d", "e"]}', "too_many_inputs"),
                                        (b'{"inputs": [3]}', None)])
def test_explain_bad_input_is_a_400_with_the_protocol_code(body, code):
    async def test(client, service):
        return await client.post("/explain", content=body)
    r = serve(EXT, test)
    assert r.status_code == 400 and "error" in r.json() and (code is None or r.json()["code"] == code)


def test_explain_beyond_its_queue_limit_is_rejected_at_once_and_predict_still_answers():
    async def test(client, service):
        explainer = next(r.endpoint.__self__ for r in client._transport.app.routes if r.path == "/explain")
        explainer.admitted = explainer.config.queue_limit            # as if 4 explanations were running
        rejected = await client.post("/explain", json={"inputs": ["the food was good"]})
        explainer.admitted = 0
        predicted = await client.post("/predict", json={"inputs": ["the food was good"]})
        many = await asyncio.gather(*(client.post("/explain", json={"inputs": ["the view is nice"]})
                                      for _ in range(12)))
        metrics = (await client.get("/metrics")).text
        return rejected, predicted, [r.status_code for r in many], metrics, explainer.admitted
    rejected, predicted, statuses, metrics, admitted = serve(EXT, test)
    assert rejected.status_code == 429 and rejected.json()["code"] == "explain_queue_full"
    assert rejected.headers["retry-after"] == "1" and predicted.status_code == 200
    assert set(statuses) <= {200, 429} and statuses.count(200) >= 1 and admitted == 0
    assert 'labkit_explain_requests_total{outcome="rejected"}' in metrics


def test_perturbation_rows():
    rows = text_perturbations(np.array([4, 5, 6, 0]))
    assert rows.tolist() == [[4, 5, 6, 0], [5, 6, 0, 0], [4, 6, 0, 0], [4, 5, 0, 0]]
    img = np.ones((3, 16, 16), dtype=np.float32)
    occ = image_perturbations(img, 8)
    assert occ.shape == (5, 3, 16, 16) and occ[1, :, :8, :8].sum() == 0 and occ[1].sum() == 3 * (256 - 64)


def test_explain_config_is_validated():
    with pytest.raises(ValueError):
        ExplainConfig(queue_limit=0)
    with pytest.raises(ValueError):
        ExplainConfig(max_concurrent=3, queue_limit=2)
