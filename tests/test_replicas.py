"""Replicas behind the balancer with real `labkit serve` processes: core split, kill mid-load, restart, CLI."""
import json
import threading
import time
import urllib.request

import pytest

from labkit.serve import ServeConfig, ServerProcess
from labkit.serve.loadgen import run_open_loop
from labkit.serve.workloads import sample_bodies
from labkit.serve.replicas import ReplicaSet, replica_configs, usable_cores

# --no-model: the full HTTP and process plumbing without a forward pass, so the replicas start quickly
FAST_REPLICA = ServeConfig(no_model=True)


def test_threads_are_split_so_replicas_do_not_oversubscribe():
    configs = replica_configs(ServeConfig(), replicas=2, per_replica={1: {"slow_ms": 20.0}})
    assert [c.threads for c in configs] == [max(1, usable_cores() // 2)] * 2
    assert [c.slow_ms for c in configs] == [0.0, 20.0]
    assert replica_configs(ServeConfig(), 3, threads=4)[0].threads == 4


def test_bad_replica_settings_are_named():
    with pytest.raises(ValueError, match="replicas"):
        replica_configs(ServeConfig(), 0)
    with pytest.raises(ValueError, match="per_replica"):
        replica_configs(ServeConfig(), 2, per_replica={2: {"slow_ms": 1.0}})


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _wait(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def replica_set():
    with ReplicaSet(FAST_REPLICA, n=2, policy="round_robin") as rs:
        yield rs


def test_both_replicas_serve_through_the_balancer(replica_set):
    result = run_open_loop(replica_set.predict_url, sample_bodies("text", 8), rate=100, count=40)
    assert result.counts()["ok"] == 40
    served = [r["served"] for r in replica_set.stats()["replicas"]]
    assert min(served) >= 1 and sum(served) >= 40


def test_killing_a_replica_mid_load_loses_nothing_silently(replica_set):
    killer = threading.Timer(0.5, replica_set.kill, args=(1,))
    killer.start()
    result = run_open_loop(replica_set.predict_url, sample_bodies("text", 8), rate=150, duration_s=1.5,
                           timeout_s=5.0)
    killer.join()
    counts = result.counts()
    assert sum(counts.values()) == len(result.records)            # every request has one outcome
    assert counts["timeout"] == 0 and counts["ok"] >= len(result.records) // 2
    failed = [r for r in result.records if r.outcome != "ok"]
    assert all(r.status in (502, 503) for r in failed), {r.status for r in failed}   # explicit answers
    stats = replica_set.stats()
    assert stats["replicas"][1]["healthy"] is False
    replica_set.restart(1)
    _wait(lambda: replica_set.stats()["replicas"][1]["healthy"])
    after = run_open_loop(replica_set.predict_url, sample_bodies("text", 8), rate=100, count=20)
    assert after.counts()["ok"] == 20


def test_labkit_serve_replicas_cli_runs_and_cleans_up():
    server = ServerProcess(FAST_REPLICA, extra_args=("--replicas", "2"), startup_timeout_s=120)
    with server:
        stats = _get(f"{server.url}/stats")
        assert len(stats["replicas"]) == 2
        replica_urls = [r["url"] for r in stats["replicas"]]
        _wait(lambda: all(r["healthy"] for r in _get(f"{server.url}/stats")["replicas"]))
    for url in replica_urls:                                      # the replicas went down with it
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{url}/health", timeout=2)
