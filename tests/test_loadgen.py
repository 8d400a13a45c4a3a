"""The load generator against a tiny stand-in server (Starlette on uvicorn in a thread) that can answer
ok / 429 / 503 / 500 / sleep past the timeout, so every outcome is exercised and counted."""
import argparse
import asyncio
import json
import socket
import threading
import time

import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from labkit.serve import loadgen, loadtest
from labkit.serve.loadgen import run_closed_loop, run_open_loop
from labkit.serve.records import LoadResult, Record
from labkit.serve.slo import GoodputSearch, goodput_at_slo, meets_slo, sweep_open_loop
from labkit.serve.workloads import poisson_arrivals, read_bodies, sample_bodies, zipf_bodies

OK, R429, R503, R500, SLEEP = (json.dumps({"do": d}).encode() for d in ("ok", "429", "503", "500", "sleep"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandIn:
    """Counts concurrent requests; /predict obeys the body's "do"; /serial serves one request at a time."""

    def __init__(self, service_ms: float = 20.0):
        self.inflight = self.max_inflight = 0
        self.service_s = service_ms / 1e3
        self.locks: dict[str, asyncio.Lock] = {}

    async def predict(self, request):
        do = json.loads(await request.body()).get("do", "ok")
        if do == "sleep":
            await asyncio.sleep(2)  # past every timeout the tests use
            return JSONResponse({"labels": [0], "batch_size": 1})
        if do in ("429", "503", "500"):
            return JSONResponse({"error": do, "code": "x"}, status_code=int(do), headers={"Retry-After": "1"})
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        await asyncio.sleep(0.002)
        self.inflight -= 1
        return JSONResponse({"labels": [0], "batch_size": 3})

    async def serial(self, request):
        lane = request.path_params["lane"]  # one queue per lane: a backlog left by one test hurts no other
        await request.body()
        async with self.locks.setdefault(lane, asyncio.Lock()):
            await asyncio.sleep(self.service_s)
        return JSONResponse({"labels": [0], "batch_size": 1})


@pytest.fixture(scope="module")
def server():
    state, port = StandIn(), _free_port()
    app = Starlette(routes=[Route("/predict", state.predict, methods=["POST"]),
                           Route("/serial/{lane}", state.serial, methods=["POST"])])
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                                       timeout_graceful_shutdown=1))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "stand-in server did not start"
    state.base = f"http://127.0.0.1:{port}"
    yield state
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize("client", loadgen.CLIENTS)
def test_open_loop_accounts_for_every_outcome(server, client):
    bodies = [OK, R429, R503, R500, SLEEP]
    res = run_open_loop(server.base + "/predict", bodies, rate=200, count=25, timeout_s=0.5, client=client)
    s = res.summary()
    assert (s["sent"], s["ok"], s["rejected"], s["error"], s["timeout"]) == (25, 5, 10, 5, 5)
    assert s["ok"] + s["rejected"] + s["error"] + s["timeout"] == s["sent"]
    by_body = {r.index % 5: r for r in res.records}
    assert by_body[0].batch_size == 3 and by_body[0].status == 200
    assert by_body[1].status == 429 and by_body[2].status == 503 and by_body[3].status == 500
    assert by_body[4].outcome == "timeout" and by_body[4].status == 0
    assert s["mean_batch_size"] == 3
    assert s["rejection_rate"] == pytest.approx(10 / 25)
    assert [r.index for r in res.records] == list(range(25))


@pytest.mark.parametrize("client", loadgen.CLIENTS)
def test_connection_refused_is_an_error_not_a_lost_request(client):
    res = run_open_loop(f"http://127.0.0.1:{_free_port()}/predict", [OK], rate=100, count=5, timeout_s=1,
                        client=client)
    s = res.summary()
    assert s["error"] == 5 and s["sent"] == 5
    assert all(r.error for r in res.records)


def test_global_deadline_cancels_pending_and_records_them_as_timeouts(server):
    t0 = time.perf_counter()
    res = run_open_loop(server.base + "/predict", [SLEEP], rate=50, count=5, timeout_s=20, deadline_s=0.5)
    assert time.perf_counter() - t0 < 1.9  # ended by the deadline, before the server's 2 s sleep answers
    assert res.counts()["timeout"] == 5 and len(res.records) == 5


def test_duration_bounded_run_stops_by_itself(server):
    res = run_open_loop(server.base + "/predict", [OK], rate=100, duration_s=0.4, timeout_s=2)
    s = res.summary()
    assert s["sent"] == len(poisson_arrivals(100, duration_s=0.4, seed=0))
    assert s["ok"] == s["sent"]
    assert all(r.intended_s < 0.4 for r in res.records)


def test_open_loop_latency_counts_queueing_from_the_intended_time(server):
    # 10 requests intended within a few ms, served one at a time at >= 20 ms each: the last one waits for
    # the nine before it, and an open-loop generator must charge that wait to its latency.
    res = run_open_loop(server.base + "/serial/a", [OK], rate=2000, count=10, timeout_s=5)
    lat = sorted(r.latency_ms for r in res.records)
    assert res.counts()["ok"] == 10
    assert lat[-1] >= 9 * 20 - 5  # a lower bound set by the server's sleeps, not a speed claim
    assert all(r.latency_ms >= (r.sent_s - r.intended_s) * 1e3 for r in res.records)


@pytest.mark.parametrize("client", loadgen.CLIENTS)
def test_closed_loop_keeps_at_most_users_in_flight(server, client):
    server.max_inflight = 0
    res = run_closed_loop(server.base + "/predict", [OK], users=3, count=30, timeout_s=2, client=client)
    assert res.summary()["ok"] == 30 and len(res.records) == 30
    assert 1 <= server.max_inflight <= 3
    assert res.mode == "closed" and sorted(r.index for r in res.records) == list(range(30))


def test_closed_loop_duration_and_outcomes(server):
    res = run_closed_loop(server.base + "/predict", [OK, R429], users=2, duration_s=0.3, timeout_s=1)
    c = res.counts()
    assert c["ok"] > 0 and c["rejected"] > 0 and sum(c.values()) == len(res.records)


def test_sync_wrapper_works_under_a_running_event_loop(server):
    async def notebook_cell():  # Jupyter runs cells inside a running loop
        return run_open_loop(server.base + "/predict", [OK], rate=100, count=3, timeout_s=2)

    assert asyncio.run(notebook_cell()).counts()["ok"] == 3


def test_summary_goodput_uses_the_slo(server):
    res = run_open_loop(server.base + "/predict", [OK], rate=100, count=10, timeout_s=2)
    s, tight = res.summary(), res.summary(slo_ms=1e-6)
    assert s["goodput_rps"] == s["throughput_rps"] > 0
    assert tight["goodput_rps"] == 0 and tight["slo_ms"] == 1e-6
    assert s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["p999_ms"]
    assert s["offered_rps"] == 100


def test_to_json_and_to_csv(server, tmp_path):
    import pandas as pd

    res = run_open_loop(server.base + "/predict", [OK, R429], rate=100, count=6, timeout_s=2)
    doc = json.loads(res.to_json(tmp_path / "r.json", slo_ms=50).read_text())
    assert doc["summary"]["sent"] == 6 and len(doc["records"]) == 6 and doc["config"]["rate"] == 100
    df = pd.read_csv(res.to_csv(tmp_path / "r.csv"))
    assert len(df) == 6 and set(df["outcome"]) == {"ok", "rejected"}


def test_accounting_is_checked_on_construction():
    bad = Record(0, 0.0, 0.0, 1.0, 200, "lost")
    with pytest.raises(KeyError):
        LoadResult([bad], "open")


def test_sweep_and_goodput_search_find_the_capacity(server):
    url = server.base + "/serial/b"  # one at a time, 20 ms each: at most 50 req/s
    table = sweep_open_loop(url, [OK], [10, 200], duration_s=0.4, timeout_s=2)
    assert list(table.index) == [10, 200] and table.loc[200, "p99_ms"] > table.loc[10, "p99_ms"]
    found = goodput_at_slo(server.base + "/serial/c", [OK], slo_ms=150, rates=[10, 200, 300, 400],
                           duration_s=0.4, timeout_s=2)
    assert isinstance(found, GoodputSearch) and found.rate_rps == 10 and found.goodput_rps > 0
    assert list(found.table["meets_slo"]) == [True, False, False]  # two misses in a row end the scan
    refined = goodput_at_slo(server.base + "/serial/d", [OK], slo_ms=150, rates=[10, 400], duration_s=0.4,
                             timeout_s=2, refine=1, patience=1)
    assert list(refined.table["offered_rps"]) == [10, 400, 205]  # one bisection between pass and miss
    assert not meets_slo({"ok": 0, "p99_ms": 1.0, "failed_fraction": 0.0}, slo_ms=10)


def test_poisson_arrivals_are_seeded_and_have_the_right_rate():
    a, b = poisson_arrivals(500, count=4000, seed=1), poisson_arrivals(500, count=4000, seed=1)
    assert np.array_equal(a, b) and np.all(np.diff(a) > 0)
    assert np.mean(np.diff(a)) == pytest.approx(1 / 500, rel=0.1)
    assert poisson_arrivals(100, duration_s=1.0, seed=0).max() < 1.0
    assert len(poisson_arrivals(100, count=5, duration_s=100, seed=0)) == 5


@pytest.mark.parametrize("kwargs, word", [
    (dict(rate=0, count=5), "rate"), (dict(rate=10), "count or duration_s"),
    (dict(rate=10, count=0), "count"), (dict(rate=10, duration_s=-1), "duration_s"),
])
def test_bad_arguments_name_the_problem(kwargs, word):
    with pytest.raises(ValueError, match=word):
        poisson_arrivals(**kwargs)


def test_bad_run_arguments():
    with pytest.raises(ValueError, match="bodies"):
        run_open_loop("http://127.0.0.1:1/predict", [], rate=10, count=1)
    with pytest.raises(ValueError, match="users"):
        run_closed_loop("http://127.0.0.1:1/predict", [OK], users=0, count=1)
    with pytest.raises(ValueError, match="timeout_s"):
        run_closed_loop("http://127.0.0.1:1/predict", [OK], users=1, count=1, timeout_s=0)


def test_sample_and_zipf_bodies():
    text = [json.loads(b) for b in sample_bodies("text", n=4, items=2)]
    assert all(len(t["inputs"]) == 2 and isinstance(t["inputs"][0], str) for t in text)
    img = json.loads(sample_bodies("image", n=2)[0])["inputs"]
    assert np.asarray(img).shape == (1, 3, 32, 32) and 0 <= np.min(img) <= np.max(img) <= 1
    distinct = sample_bodies("text", n=50)
    skewed = zipf_bodies(distinct, 2000, s=1.2, seed=0)
    top_share = max(skewed.count(b) for b in distinct) / len(skewed)
    assert top_share > 5 / 50  # the most popular body is far more common than under a uniform draw
    with pytest.raises(ValueError, match="model"):
        sample_bodies("audio")


def _cli(*argv):
    parser = argparse.ArgumentParser()
    loadtest.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_open_loop_json_and_files(server, tmp_path, capsys):
    csv_path, out = tmp_path / "r.csv", tmp_path / "r.json"
    args = _cli(server.base, "--rate", "100", "--count", "5", "--model", "text", "--json", "--slo-ms", "100",
                "--csv", str(csv_path), "--out-json", str(out))
    assert loadtest.run(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sent"] == 5 and summary["ok"] == 5 and summary["slo_ms"] == 100
    assert csv_path.exists() and json.loads(out.read_text())["summary"]["sent"] == 5


def test_cli_closed_loop_with_body_file(server, tmp_path, capsys):
    body_file = tmp_path / "bodies.jsonl"
    body_file.write_text("\n".join(b.decode() for b in (OK, R429)) + "\n")
    assert read_bodies(body_file) == [OK, R429]
    assert loadtest.run(_cli(server.base + "/predict", "--users", "2", "--count", "4",
                            "--body-file", str(body_file))) == 0
    out = capsys.readouterr().out
    assert "rejected: 2" in out and "sent: 4" in out


def test_client_cost_reports_rate_and_cpu_per_request(server):
    for client in loadgen.CLIENTS:
        cost = loadgen.client_cost(server.base + "/predict", [OK], client=client, users=4, duration_s=0.3)
        assert cost["client"] == client and cost["ok"] == cost["sent"] > 0
        assert cost["throughput_rps"] > 0 and cost["cpu_us_per_request"] > 0


def test_unknown_client_is_refused(server):
    with pytest.raises(ValueError, match="client must be one of"):
        run_open_loop(server.base + "/predict", [OK], rate=10, count=1, client="curl")


def test_cli_needs_exactly_one_load_shape():
    with pytest.raises(SystemExit):
        _cli("http://x", "--count", "3")
    with pytest.raises(SystemExit):
        _cli("http://x", "--rate", "1", "--users", "2", "--count", "3")
