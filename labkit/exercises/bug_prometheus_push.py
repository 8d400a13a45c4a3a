"""Find the bug: Prometheus metrics written the way a tutorial got them wrong (set() on a counter, a registry
and an HTTP server per update, "sending metrics to Grafana")."""
import threading
import urllib.request

from labkit.exercises.prometheus_metrics import parse
from labkit.grading.exercise import Exercise
from labkit.serve.process import free_port

TASK = """
`RequestMetrics(port)` is meant to count a service's requests by outcome and their latency, expose them on
`http://127.0.0.1:<port>/metrics` for Prometheus to scrape, and show them on a Grafana dashboard.
`record(outcome, latency_s)` is called once per request; `exposition()` returns the text format;
`close()` stops the exporter. It does not work, and not for one reason only.

**Find the bugs and fix them**, keeping the names `app_requests_total` (Counter, label `outcome`) and
`app_latency_seconds` (Histogram). The grader records requests, scrapes the HTTP endpoint and parses the
result with prometheus_client's parser. Think about what each metric type allows, how many registries and
exporters one process should have, and which way data flows between a service, Prometheus and Grafana.
Taught in 12_monitoring_and_alerting (§1, §6).
"""

STUB = '''
import json
import urllib.request

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, start_http_server

GRAFANA_URL = "http://127.0.0.1:3000/api/metrics"


class RequestMetrics:
    def __init__(self, port):
        self.port = port
        self.totals = {}
        self.latencies = []
        self.registry = CollectorRegistry()
        self.servers = []

    def record(self, outcome, latency_s):
        self.totals[outcome] = self.totals.get(outcome, 0) + 1
        self.latencies.append(latency_s)
        # a fresh registry per update, so the metric names never clash
        self.registry = CollectorRegistry()
        requests = Counter("app_requests", "Requests by outcome", ["outcome"], registry=self.registry)
        latency = Histogram("app_latency_seconds", "Request latency", registry=self.registry)
        for name, total in self.totals.items():
            requests.labels(outcome=name).set(total)
        latency.observe(latency_s)
        # publish the new numbers: an exporter for Prometheus, and a push to the Grafana dashboard
        self.servers.append(start_http_server(self.port, addr="127.0.0.1", registry=self.registry))
        body = json.dumps({"requests": self.totals}).encode()
        urllib.request.urlopen(GRAFANA_URL, body, timeout=1)

    def exposition(self):
        return generate_latest(self.registry)

    def close(self):
        for server, thread in self.servers:
            server.shutdown()
            server.server_close()
        self.servers = []
'''

CASE = [("ok", 0.004), ("ok", 0.012), ("error", 0.3), ("ok", 0.02), ("rejected", 0.0005), ("ok", 0.9)] * 5
WANT = {"ok": 20.0, "error": 5.0, "rejected": 5.0}


def _scrape(m, port: int) -> dict:
    return parse(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read())


def _counts(fams: dict) -> dict:
    fam = fams.get("app_requests")
    assert fam is not None and fam["type"] == "counter", "app_requests_total must be a Counter"
    return {s[1]["outcome"]: s[2] for s in fam["samples"] if s[0] == "app_requests_total"}


def test_counts_by_outcome(sub):
    """30 requests recorded: the scraped counter holds every one, by outcome"""
    port = free_port()
    m = sub.RequestMetrics(port)
    try:
        for outcome, latency in CASE:
            m.record(outcome, latency)
        assert _counts(_scrape(m, port)) == WANT
    finally:
        m.close()


def test_histogram_holds_every_request(sub):
    """the latency histogram counts all 30 observations, not the last one"""
    port = free_port()
    m = sub.RequestMetrics(port)
    try:
        for outcome, latency in CASE:
            m.record(outcome, latency)
        fams = parse(m.exposition())
        count = [s[2] for s in fams["app_latency_seconds"]["samples"] if s[0] == "app_latency_seconds_count"]
        assert count == [30.0], f"app_latency_seconds_count {count}, 30 requests recorded"
    finally:
        m.close()


def test_one_exporter_for_the_process(sub):
    """recording starts no thread and no server; one registry all along"""
    port = free_port()
    m = sub.RequestMetrics(port)
    try:
        m.record("ok", 0.01)
        threads, registry = threading.active_count(), m.registry
        for outcome, latency in CASE:
            m.record(outcome, latency)
        assert threading.active_count() == threads, "record() started threads: an HTTP server per update"
        assert m.registry is registry, "record() replaced the registry: counts restart from zero"
    finally:
        m.close()


def test_nothing_is_pushed_to_grafana(sub):
    """Grafana pulls from Prometheus: record() sends nothing anywhere and never fails for it"""
    import inspect

    source = inspect.getsource(sub)
    assert "3000" not in source and "urlopen" not in source, (
        "the code still sends metrics to Grafana: Grafana stores nothing; it queries Prometheus, which scrapes "
        "/metrics")
    port = free_port()
    m = sub.RequestMetrics(port)
    try:
        m.record("ok", 0.01)
    finally:
        m.close()


EXERCISE = Exercise(
    name="bug_prometheus_push", title="Find the bug · Metrics pushed, reset and re-served", task=TASK, stub=STUB,
    tests=(test_counts_by_outcome, test_histogram_holds_every_request, test_one_exporter_for_the_process,
           test_nothing_is_pushed_to_grafana),
    kind="bug", bug_tests=("test_counts_by_outcome", "test_histogram_holds_every_request",
                           "test_one_exporter_for_the_process", "test_nothing_is_pushed_to_grafana"),
)
