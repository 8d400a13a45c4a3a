"""labkit.secure.controls: the abusive-request battery against the in-process app (an untrained model stands in),
the per-client flood, and a server loader that refuses a tampered sealed file."""
import asyncio
import math
from pathlib import Path

import pytest
import torch

from labkit.secure import controls, crypto
from labkit.secure.errors import TamperedError
from labkit.serve.config import ServeConfig
from labkit.serve.lifecycle import LoadedModel, build_model
from labkit.serve.preprocessing import make_preprocessor


def _untrained_loader():
    torch.manual_seed(0)
    preprocess = make_preprocessor("text")
    model = build_model("text", len(preprocess.vocab)).eval()
    return LoadedModel("text", model, preprocess, Path("untrained"), math.nan, 0.0)


def test_abusive_requests_get_named_4xx_and_a_burst_gets_429():
    config = ServeConfig(model="text", max_body_bytes=4096, max_items=8, queue_limit=4, slow_ms=20)
    probe = asyncio.run(asyncio.wait_for(controls.probe_server(config, _untrained_loader, burst=16), 60))
    rows = probe["rows"]
    assert rows[0]["status"] == 200
    assert {r["code"] for r in rows[1:]} >= {"malformed_json", "too_large", "too_many_inputs", "unknown_field",
                                              "wrong_dtype", "bad_field"}
    assert all(400 <= r["status"] < 500 for r in rows[1:])
    assert set(probe["burst_codes"]) <= {200, 429} and 429 in probe["burst_codes"]
    assert probe["status_after_burst"] == 200


def test_flood_is_held_to_its_rate_and_the_quiet_client_is_never_refused():
    share = controls.flood(rate_per_s=10, burst=5, flood_rps=200, quiet_rps=5, seconds=10)
    assert share["quiet"] == {"sent": 50, "admitted": 50, "admitted_share": 1.0}
    assert share["flooder"]["sent"] == 2000 and 100 <= share["flooder"]["admitted"] <= 106  # 10/s x 10 s + burst


def test_sealed_loader_loads_the_sealed_model_and_refuses_a_tampered_one(tmp_path):
    state = _untrained_loader().model.state_dict()
    key = crypto.generate_key()
    path = crypto.seal_file(tmp_path / "text.sealed", state, key, "text-gru", "1")
    loaded = controls.sealed_loader(path, key, "text-gru", "1")()
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in state.items())
    blob = path.read_bytes()
    bad = tmp_path / "bad.sealed"
    bad.write_bytes(blob[:-5] + bytes([blob[-5] ^ 1]) + blob[-4:])
    with pytest.raises(TamperedError):
        controls.sealed_loader(bad, key, "text-gru", "1")()
