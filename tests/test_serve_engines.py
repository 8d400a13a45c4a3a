"""Forward engines: the export-friendly GRU forward equals the packed one, the ONNX Runtime forward equals
PyTorch (text and image, any batch and length), exports are cached per weights file, bad choices are named."""
import json
import math

import numpy as np
import pytest
import torch

from labkit.models import RNNClassifier, SmallCNN
from labkit.serve import ServeConfig, engines
from labkit.serve.engines import predict_probs
from labkit.serve.lifecycle import LoadedModel
from labkit.serve.preprocessing import IMAGE_SHAPE, MAX_LEN, make_preprocessor


def padded_ids(lengths, vocab_size: int, seed: int = 0) -> np.ndarray:
    """(len(lengths), MAX_LEN) random token ids, each row padded (0) after its length."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab_size, size=(len(lengths), MAX_LEN))
    for row, n in enumerate(lengths):
        ids[row, n:] = 0
    return ids.astype(np.int64)


@pytest.fixture(scope="module")
def text_model():
    torch.manual_seed(0)
    return RNNClassifier(30, num_classes=2, embed_dim=8, hidden_dim=16, cell="gru").eval()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("cache")
    mp.setenv("LABKIT_CACHE", str(root))
    yield root
    mp.undo()


def save(model, path) -> str:
    torch.save({"architecture": type(model).__name__, "model": model.state_dict()}, path)
    return str(path)


def test_last_step_forward_equals_the_packed_forward(text_model):
    ids = padded_ids([1, 2, 7, 13, MAX_LEN, 4], vocab_size=30)
    with torch.inference_mode():
        ours = engines.LastStepProbs(text_model)(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(ours, predict_probs(text_model, ids), atol=1e-6)


def test_onnx_text_forward_matches_pytorch_for_any_batch_and_length(text_model, cache, tmp_path):
    weights = save(text_model, tmp_path / "text.pt")
    forward = engines.make_forward("text", text_model, weights, engine="onnx")
    assert isinstance(forward, engines.OnnxForward)
    assert forward.session.get_inputs()[0].shape[1] in ("time", MAX_LEN)  # symbolic, or fixed at full width
    for lengths in ([3], [1, 1], [2, 9, 13], [MAX_LEN] * 5, list(range(1, 33))):
        ids = padded_ids(lengths, vocab_size=30, seed=len(lengths))
        np.testing.assert_allclose(forward(ids), predict_probs(text_model, ids), atol=1e-5)


def test_int8_engine_serves_int8_weights_close_to_fp32_and_is_cached(text_model, cache, tmp_path):
    import onnx

    weights = save(text_model, tmp_path / "text.pt")
    forward = engines.make_forward("text", text_model, weights, engine="onnx-int8")
    path = engines.int8_for_serving("text", text_model, weights)
    assert path.exists() and path != engines.onnx_file("text", weights)
    assert any(t.data_type == onnx.TensorProto.INT8 for t in onnx.load(str(path)).graph.initializer)
    ids = padded_ids([3, 9, 13, MAX_LEN], vocab_size=30, seed=1)
    gap = np.abs(forward(ids) - predict_probs(text_model, ids)).max()
    assert 0 < gap < 0.1, gap     # INT8 moves the probabilities a little, never by much on this model
    assert engines.int8_for_serving("text", text_model, weights) == path   # exported and quantized once


def test_onnx_image_forward_matches_pytorch(cache, tmp_path):
    torch.manual_seed(0)
    model = SmallCNN(in_channels=3, num_classes=4, image_size=32).eval()
    forward = engines.make_forward("image", model, save(model, tmp_path / "image.pt"), engine="onnx")
    x = np.random.default_rng(0).random((5, *IMAGE_SHAPE), dtype=np.float32)
    for rows in (x[:1], x):
        np.testing.assert_allclose(forward(rows), predict_probs(model, rows), atol=1e-5)


def test_export_is_cached_per_weights_file(text_model, cache, tmp_path):
    weights = save(text_model, tmp_path / "again.pt")
    first = engines.export_for_serving("text", text_model, weights)
    stamp = first.stat().st_mtime_ns
    assert engines.export_for_serving("text", text_model, weights) == first and first.stat().st_mtime_ns == stamp
    other = RNNClassifier(30, num_classes=2, embed_dim=8, hidden_dim=16, cell="gru").eval()
    assert engines.onnx_file("text", save(other, tmp_path / "other.pt")) != first  # new weights, new file
    assert first.parent == cache / "serving"


def test_torch_engine_is_the_eager_model(text_model):
    ids = padded_ids([4, 6], vocab_size=30)
    forward = engines.make_forward("text", text_model, "unused.pt", engine="torch")
    np.testing.assert_array_equal(forward(ids), predict_probs(text_model, ids))


def test_bad_engine_and_missing_weights_are_named(text_model, tmp_path):
    with pytest.raises(ValueError, match="engine must be one of"):
        engines.make_forward("text", text_model, "w.pt", engine="tensorrt")
    with pytest.raises(ValueError, match="engine must be one of"):
        ServeConfig(engine="tensorrt")
    with pytest.raises(FileNotFoundError, match="weights"):
        engines.make_forward("text", text_model, tmp_path / "missing.pt", engine="onnx")
    assert ServeConfig(engine="onnx").to_args() == ["--engine", "onnx"]


def test_app_on_onnx_answers_like_the_app_on_torch(text_model, cache, tmp_path):
    """The whole server path (batcher, thread worker) on both engines gives the same probabilities."""
    import asyncio

    import httpx

    from labkit.serve.app import create_app

    preprocess = make_preprocessor("text")
    torch.manual_seed(0)
    model = RNNClassifier(len(preprocess.vocab), num_classes=2, embed_dim=8, hidden_dim=16, cell="gru").eval()
    weights = save(model, tmp_path / "served.pt")
    loaded = LoadedModel("text", model, preprocess, weights, math.nan, 0.0)
    texts = ["the food was not good", "good", "the plot was bad and the acting was not great at all"]

    async def ask(engine: str):
        app = create_app(ServeConfig(engine=engine), loader=lambda: loaded)
        await app.state.service.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                r = await client.post("/predict", json={"inputs": texts})
                return r.status_code, json.loads(r.content)
        finally:
            await app.state.service.stop()

    (s_torch, torch_body), (s_onnx, onnx_body) = asyncio.run(ask("torch")), asyncio.run(ask("onnx"))
    assert s_torch == s_onnx == 200
    assert torch_body["labels"] == onnx_body["labels"]
    np.testing.assert_allclose(onnx_body["probabilities"], torch_body["probabilities"], atol=1e-5)


def test_rate_beside_python_measures_both_and_restores_the_switch_interval():
    import sys
    import time

    before = sys.getswitchinterval()
    out = engines.rate_beside_python(lambda x: time.sleep(0.001), np.zeros((4, 2)), seconds=0.1)
    assert set(out) == {"alone_rows_s", "beside_python_rows_s", "ratio"}
    assert out["alone_rows_s"] > 0 and out["beside_python_rows_s"] > 0
    assert out["ratio"] == pytest.approx(out["beside_python_rows_s"] / out["alone_rows_s"])
    assert sys.getswitchinterval() == pytest.approx(before, abs=2e-6)  # stored in whole microseconds


def test_concurrent_exports_write_one_file(text_model, cache, tmp_path):
    """Servers starting together: one exports, the others wait on the lock and reuse the file."""
    from concurrent.futures import ThreadPoolExecutor

    weights = save(text_model, tmp_path / "together.pt")
    with ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda _: engines.export_for_serving("text", text_model, weights), range(3)))
    assert len(set(paths)) == 1 and paths[0].exists()
    assert not list(paths[0].parent.glob("*.tmp.onnx"))  # no half-written leftovers
