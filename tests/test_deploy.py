"""labkit.deploy: versions, cost arithmetic, load accounting, capstone plumbing, and one real rolling update."""
import math

import pytest
import torch

from labkit.deploy import capstone, coldstart, costs
from labkit.deploy.fleet import Fleet, versions
from labkit.deploy.load import BackgroundLoad, Chunk, timeline, totals
from labkit.deploy.rolling import rolling_update
from labkit.deploy.versions import EXTENSION, make_version
from labkit.serve.config import ServeConfig
from labkit.serve.records import LoadResult, Record


def test_make_version_is_a_new_file_with_fp16_rounded_weights(tmp_path):
    src = tmp_path / "v1.pt"
    w = torch.randn(50, 7, generator=torch.Generator().manual_seed(0))
    torch.save({"architecture": "X", "model": {"w": w, "steps": torch.tensor(3)}}, src)
    new = torch.load(make_version(src, tmp_path / "v2.pt"), weights_only=True)["model"]
    assert new["w"].dtype == torch.float32 and not torch.equal(new["w"], w)
    assert torch.allclose(new["w"], w, rtol=1e-3, atol=1e-4) and torch.equal(new["w"], w.half().float())
    assert new["steps"].item() == 3
    again = make_version(src, tmp_path / "other-name.pt")
    assert again.read_bytes() == (tmp_path / "v2.pt").read_bytes()     # same weights, same bytes, same ONNX cache
    scaled = torch.load(make_version(src, tmp_path / "v3.pt", scale=2.0), weights_only=True)["model"]["w"]
    assert torch.equal(scaled, (2 * w).half().float())


def test_cost_arithmetic():
    assert costs.cost_per_million(1000.0, 3.6) == pytest.approx(1.0)
    assert costs.cost_per_million(1000.0, 3.6, utilization=0.5) == pytest.approx(2.0)
    assert costs.units_needed(2500, 1000) == 3 and costs.units_needed(2000, 1000) == 2
    assert costs.units_needed(1000, 1000, utilization=0.5) == 2
    assert costs.break_even_rps(500.0, 0.05, 2.0) == pytest.approx(20_000.0)
    with pytest.raises(ValueError):
        costs.cost_per_million(0.0, 1.0)
    assert coldstart.reaction_time_s(3.0, 0.1, 1.0) == pytest.approx(4.1)


def _result(outcomes, latency_ms=10.0):
    records = [Record(i, i * 0.01, i * 0.01, latency_ms, 200 if o == "ok" else 503, o) for i, o in enumerate(outcomes)]
    return LoadResult(records, "open", {"rate": 100.0})


def test_totals_and_timeline_account_for_every_request():
    chunks = [Chunk(0.0, 100.0, _result(["ok"] * 5 + ["rejected"])), Chunk(1.0, 50.0, _result(["ok", "error"]))]
    t = totals(chunks)
    assert t == {"ok": 6, "rejected": 1, "error": 1, "timeout": 0, "sent": 8}
    frame = timeline(chunks, slo_ms=50.0)
    assert list(frame["sent"]) == [6, 2] and list(frame["offered_rps"]) == [100.0, 50.0]


def test_capstone_steps_share_servers_where_configs_are_equal():
    base = ServeConfig(threads=1)
    groups = capstone.step_configs(base)
    assert [len(g) for g in groups] == [1, 1, 1, 1, 1, 2]
    assert groups[0][0].batching is False and groups[2][0].engine == "onnx" and groups[3][0].engine == "onnx-int8"
    assert groups[4][0].cache and groups[4][0].engine == "onnx"      # INT8 not held: the cache builds on fp32
    assert groups[5][0] == groups[4][0].replace(reuse_port=True)   # the same server, twice on one port
    held = capstone.step_configs(base, capstone.capstone_steps(use_int8=True))
    assert held[4][0].engine == held[5][0].engine == "onnx-int8"
    bodies, labels = capstone.labelled_bodies(n=40, items=16)
    assert len(bodies) == 3 and len(labels) == 40 and set(labels) <= {0, 1}


def test_rolling_update_under_load_loses_no_request():
    base = ServeConfig(no_model=True, extensions=EXTENSION)
    with Fleet(base, slots=1) as fleet:
        before = [s.pid for s in fleet.servers]
        with BackgroundLoad(fleet.predict_url, [b'{"inputs": ["a b"]}'], lambda t: 50.0, chunk_s=0.5) as load:
            rows = rolling_update(fleet, base.replace(slow_ms=1.0), t0=load.t0)
        assert versions(fleet.servers) == ["loading"]        # --no-model: no weights file
        assert [s.pid for s in fleet.servers] != before and len(rows) == 1
        assert rows[0]["start_s"] > 0 and rows[0]["drain_s"] >= 0 and not math.isnan(rows[0]["stop_s"])
    t = totals(load.chunks)
    assert t["sent"] > 0 and t["error"] == t["timeout"] == t["rejected"] == 0 and t["ok"] == t["sent"]


def test_scaler_decides_one_change_at_a_time_within_bounds():
    from labkit.deploy.scaler import ScalerConfig, decide

    c = ScalerConfig(min_replicas=1, max_replicas=3, high_outstanding=4.0, low_outstanding=0.5, down_after=3,
                     up_after=2)
    assert decide(2, 1, False, 0, c) == 1 and decide(1, 1, False, 0, c) == 0   # one busy look is a burst
    assert decide(5, 3, False, 0, c) == 0            # at the ceiling
    assert decide(5, 1, True, 0, c) == 0             # a change is still under way
    assert decide(0, 2, False, 3, c) == -1 and decide(0, 2, False, 2, c) == 0
    assert decide(0, 1, False, 9, c) == 0            # at the floor
    with pytest.raises(ValueError):
        ScalerConfig(min_replicas=2, max_replicas=1)


def test_package_size_counts_files_and_refuses_a_missing_package():
    assert coldstart.package_size_mb("labkit") > 0.1
    with pytest.raises(ModuleNotFoundError):
        coldstart.package_size_mb("no_such_package_labkit")


def test_int8_gate_compares_both_graphs_and_bench_capstone_parses():
    gate = capstone.int8_holds(n=200)
    assert 0.9 < gate["fp32"] <= 1 and 0 < gate["int8"] <= 1
    assert gate["holds"] == (gate["int8"] >= gate["fp32"] - capstone.MAX_INT8_DROP)
    from labkit.cli import build_parser

    args = build_parser().parse_args(["bench", "capstone", "--quick", "--json"])
    assert args.func is capstone.run and args.quick and args.json


def test_reuse_port_replicas_share_one_port_and_both_answer():
    import json
    import urllib.request

    config = ServeConfig(threads=1, reuse_port=True)
    with capstone.reuse_port_replicas([config, config]) as url:
        health = url.rsplit("/predict", 1)[0] + "/health"
        pids = set()
        for _ in range(40):  # each urlopen is a new connection, hashed by the kernel to one of the two
            with urllib.request.urlopen(health, timeout=5) as resp:
                pids.add(json.loads(resp.read())["pid"])
    assert len(pids) == 2, pids
