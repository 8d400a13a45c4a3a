"""The load generator against the REAL server: a short open-loop overload at ~2x capacity with a small
queue limit. Every request is accounted for, the client's count agrees with the server's /metrics, and
rejections come back faster than admitted requests (they are answered before any queueing)."""
import re
import urllib.request

import pytest

from labkit.serve import ServeConfig, ServerProcess
from labkit.serve.loadgen import run_closed_loop, run_open_loop
from labkit.serve.workloads import sample_bodies

QUEUE_LIMIT = 4


def _outcomes(base_url: str) -> dict[str, float]:
    """labkit_requests_total by outcome, read from /metrics."""
    text = urllib.request.urlopen(base_url + "/metrics", timeout=5).read().decode()
    return {m[1]: float(m[2]) for m in re.finditer(r'labkit_requests_total\{outcome="(\w+)"\} ([0-9.e+]+)', text)}


@pytest.fixture(scope="module")
def naive_server():
    # --no-batching: one forward per request, so capacity is low and a modest client rate overloads it
    with ServerProcess(ServeConfig(batching=False, queue_limit=QUEUE_LIMIT)) as server:
        yield server


def test_overload_every_request_accounted_and_rejections_fast(naive_server):
    url, bodies = naive_server.url + "/predict", sample_bodies("text", n=64)
    capacity = run_closed_loop(url, bodies, users=QUEUE_LIMIT, duration_s=1.0, timeout_s=5).summary()["throughput_rps"]
    before = _outcomes(naive_server.url)
    result = run_open_loop(url, bodies, rate=max(2 * capacity, 50), duration_s=2.0, timeout_s=5)
    s = result.summary(slo_ms=50)
    after = _outcomes(naive_server.url)
    assert s["ok"] + s["rejected"] + s["error"] + s["timeout"] == s["sent"] == len(result.records)
    assert s["ok"] > 0 and s["rejected"] > 0, s      # overloaded: some served, some turned away
    assert s["error"] == 0 and s["timeout"] == 0, s  # never an error or a hang under overload
    assert {r.status for r in result.records if r.outcome == "rejected"} == {429}
    # server and client agree, request for request
    assert after.get("ok", 0) - before.get("ok", 0) == s["ok"]
    assert after.get("queue_full", 0) - before.get("queue_full", 0) == s["rejected"]
    rejected = sorted(r.latency_ms for r in result.records if r.outcome == "rejected")
    # turned away after at most the transport's hold (5 ms) plus the client's own overhead, never queued behind work
    assert rejected[len(rejected) // 2] < 25.0, rejected[len(rejected) // 2]


def test_closed_loop_under_the_queue_limit_is_never_rejected(naive_server):
    url = naive_server.url + "/predict"
    result = run_closed_loop(url, sample_bodies("text", n=8), users=QUEUE_LIMIT, count=40, timeout_s=10)
    s = result.summary()
    assert s["sent"] == 40 and s["ok"] == 40 and s["rejected"] == 0
    assert {r.batch_size for r in result.records} == {1}  # batching off: every forward is one request


def test_bench_serving_bound_config_and_report():
    import argparse

    from labkit.serve import benchmark

    assert benchmark.combined_bound(1000.0, 1000.0) == pytest.approx(500.0)
    with pytest.raises(ValueError, match="rates"):
        benchmark.combined_bound(1000.0, 0.0)
    with pytest.raises(ValueError, match="slo_ms"):
        benchmark.BenchConfig(slo_ms=0)
    parser = argparse.ArgumentParser()
    benchmark.add_arguments(parser)
    quick = benchmark.config_from_args(parser.parse_args(["--quick", "--max-wait-ms", "5"]))
    assert quick.duration_s == benchmark.QUICK["duration_s"] and quick.max_wait_ms == 5 and quick.slo_ms == 50
    assert quick.server().to_args() == ["--max-wait-ms", "5.0", "--engine", "onnx"]
    assert quick.server(batching=False).batching is False
    fake = {"slo_ms": 50.0, "r_model": 4000.0, "r_http": 2000.0, "bound": 1333.3, "naive_goodput": 300.0,
            "batched_goodput": 1000.0, "batched_over_naive": 1000 / 300, "batched_over_bound": 0.75,
            "batched_server": [], "bench": {"max_batch": 64, "threads": 1, "engine": "onnx"}, "seconds": 100.0}
    lines = benchmark.format_report(fake)
    assert [ln.split(":")[0] for ln in lines] == ["slo", "r_model", "r_http", "bound", "naive_goodput",
                                                  "batched_goodput", "batched/naive", "batched/bound", "seconds"]


def test_bench_overload_reports_each_level_with_every_request_accounted(capsys):
    """`labkit bench overload` (issue 13's measurement) on a small naive server: capacity, then 0.5x and 3x."""
    import json

    from labkit.cli import main

    code = main(["bench", "overload", "--engine", "torch", "--no-batching", "--queue-limit", "4", "--users", "4",
                 "--levels", "0.5,3", "--duration", "1", "--connections", "64", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and [r["offered_x"] for r in rows] == [0.5, 3.0]
    for r in rows:
        assert r["ok"] + r["rejected"] + r["error"] + r["timeout"] == r["sent"] > 0, r
    assert rows[0]["p99_vs_first"] == 1.0 and rows[1]["rejected"] > 0 and rows[1]["error"] == 0, rows
    assert main(["bench", "overload", "--levels", "0,3"]) == 1  # a bad level is a clear error, no server started
    assert main(["bench", "overload", "--capacity", "0"]) == 1


def test_capacity_note_warns_when_the_users_exceed_what_the_server_admits_at_overload():
    from labkit.serve import ServeConfig
    from labkit.serve.overload import capacity_note

    default = ServeConfig()  # adaptive limit: its floor is two batches of 64
    assert capacity_note(default, 128) is None
    assert "256 users exceed the 128 requests" in capacity_note(default, 256)
    assert "--users 32" in capacity_note(ServeConfig(adaptive_limit=False, queue_limit=32), 64)
