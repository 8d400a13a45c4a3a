"""The real Prometheus scraping the real server under a bounded load: PromQL agrees with the load generator."""
import os

import pytest

from labkit.monitor import prometheus
from labkit.monitor.faults import set_fault
from labkit.serve.config import ServeConfig
from labkit.serve.loadgen import run_open_loop
from labkit.serve.process import ServerProcess
from labkit.serve.workloads import sample_bodies

pytestmark = pytest.mark.skipif(not prometheus.available() and not os.environ.get("CI"),
                                reason="prometheus not installed (apt-get install prometheus)")


def test_promql_counts_what_the_load_generator_sent():
    config = ServeConfig(extensions="labkit.monitor.faults:routes")
    with ServerProcess(config) as server, prometheus.PrometheusProcess([server.url]) as prom:
        set_fault(server.url, error_rate=0.25)  # some requests fail: both outcomes must add up
        result = run_open_loop(server.url + "/predict", sample_bodies("text", 16), rate=80, count=160)
        counts = result.counts()
        assert counts["ok"] + counts["error"] == 160 and counts["error"] > 0, counts
        ok = prom.wait_for_value('sum(labkit_requests_total{outcome="ok"})', counts["ok"])
        assert ok == counts["ok"], f"Prometheus says {ok} ok requests, the load generator {counts['ok']}"
        assert prom.value('sum(labkit_requests_total{outcome="error"})') == counts["error"]
        assert prom.value("sum(labkit_request_latency_seconds_count)") == 160
        assert prom.targets_up() == 1
    assert not prom.alive and not prom.workdir.exists()
