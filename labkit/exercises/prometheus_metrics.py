"""Exercise: Prometheus metrics for a service, graded by scraping and parsing what it exposes."""
import threading
import urllib.request

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from labkit.grading.exercise import Exercise
from labkit.serve.process import free_port

TASK = """
Instrument a service the way Prometheus expects. Write `ServiceMetrics()` with **one registry of its own**
(`prometheus_client.CollectorRegistry`, created once in `__init__`, kept as `self.registry`) holding:

- `service_requests_total`: a **Counter** with one label, `outcome`, whose only allowed values are
  `OUTCOMES = ("ok", "error", "rejected")`;
- `service_in_flight`: a **Gauge** of requests started and not yet finished;
- `service_latency_seconds`: a **Histogram** with buckets chosen for a millisecond service: at least 4
  bucket bounds at or below 0.1 s, the smallest at or below 0.005 s, the largest at or above 1 s.

Methods:
- `started()`: a request began; `finished(outcome, latency_s)`: it ended (count it, observe its latency,
  lower the gauge). An outcome outside `OUTCOMES` raises `ValueError` and records nothing (unbounded label
  values would create a time series per value);
- `exposition()` → the text exposition format of the registry as bytes (`prometheus_client.generate_latest`);
- `serve(port)` → start **one** HTTP exporter on 127.0.0.1:`port` for this registry
  (`prometheus_client.start_http_server` returns `(server, thread)`), return its URL; `close()` shuts it down.

The grader feeds requests, scrapes the exposition and the HTTP endpoint, parses them with prometheus_client's
own parser and checks counts and bucket counts against its own, that counters never go down between scrapes,
and that no registry or HTTP server is created per update. Worked version: `labkit/serve/telemetry.py`,
notebook 12 §1.
"""

STUB = '''
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

OUTCOMES = ("ok", "error", "rejected")


class ServiceMetrics:
    def __init__(self):
        raise NotImplementedError("ServiceMetrics.__init__")

    def started(self):
        raise NotImplementedError("started")

    def finished(self, outcome, latency_s):
        raise NotImplementedError("finished")

    def exposition(self):
        raise NotImplementedError("exposition")

    def serve(self, port):
        raise NotImplementedError("serve")

    def close(self):
        raise NotImplementedError("close")
'''

OUTCOMES = ("ok", "error", "rejected")
_CASES: list[dict] = []
_asarray, _float, _sorted = np.asarray, float, sorted


def make_case(n: int, seed: int) -> dict:
    """n requests: outcomes and log-uniform latencies (0.2 ms to 3 s), with the grader's own counts."""
    rng = np.random.default_rng(seed)
    outcomes = [OUTCOMES[i] for i in rng.choice(3, n, p=[0.8, 0.15, 0.05])]
    latencies = np.exp(rng.uniform(np.log(2e-4), np.log(3.0), n))
    return {"outcomes": outcomes, "latencies": latencies.tolist(),
            "counts": {o: outcomes.count(o) for o in OUTCOMES}, "sum": float(latencies.sum())}


def prepare() -> None:
    """The cases and their expected counts, computed before the submission is imported."""
    if not _CASES:
        _CASES.extend([make_case(300, 0), make_case(2000, 1)])


def parse(text: str | bytes) -> dict[str, dict]:
    """{family name: {"type": ..., "samples": [(sample name, labels, value)]}} via prometheus_client's parser."""
    text = text.decode() if isinstance(text, bytes) else text
    return {f.name: {"type": f.type, "samples": [(s.name, dict(s.labels), _float(s.value)) for s in f.samples]}
            for f in text_string_to_metric_families(text)}


def feed(m, case: dict, start: int = 0, stop: int | None = None) -> None:
    for outcome, latency in list(zip(case["outcomes"], case["latencies"]))[start:stop]:
        m.started()
        m.finished(outcome, latency)


def counts_of(families: dict) -> dict[str, float]:
    fam = families.get("service_requests")
    assert fam is not None and fam["type"] == "counter", "no Counter named service_requests(_total) exposed"
    return {s[1].get("outcome"): s[2] for s in fam["samples"] if s[0] == "service_requests_total"}


def buckets_of(families: dict) -> list[tuple[float, float]]:
    fam = families.get("service_latency_seconds")
    assert fam is not None and fam["type"] == "histogram", "no Histogram named service_latency_seconds exposed"
    return [(_float(s[1]["le"]), s[2]) for s in fam["samples"] if s[0] == "service_latency_seconds_bucket"]


def check_case(families: dict, case: dict) -> None:
    got = counts_of(families)
    for o in OUTCOMES:
        assert got.get(o, 0.0) == case["counts"][o], f"outcome {o!r}: exposed {got.get(o)}, fed {case['counts'][o]}"
    buckets, lat = buckets_of(families), _asarray(case["latencies"])
    for le, count in buckets:
        want = int((lat <= le).sum())
        assert count == want, f"bucket le={le:g}: {count:g} observations exposed, {want} fed at or below it"
    samples = {s[0]: s[2] for s in families["service_latency_seconds"]["samples"] if not s[1]}
    assert samples.get("service_latency_seconds_count") == len(lat), "histogram _count != requests fed"
    assert abs(samples.get("service_latency_seconds_sum", -1) - case["sum"]) < 1e-6 * case["sum"] + 1e-9


def test_types_names_and_buckets(sub):
    """a counter, a gauge and a histogram with millisecond buckets"""
    m = sub.ServiceMetrics()
    fams = parse(m.exposition())
    assert fams.get("service_in_flight", {}).get("type") == "gauge", "no Gauge named service_in_flight"
    bounds = [le for le, _ in buckets_of(fams) if le != float("inf")]
    assert bounds == _sorted(bounds) and len([b for b in bounds if b <= 0.1]) >= 4, f"buckets {bounds}"
    assert bounds[0] <= 0.005 and bounds[-1] >= 1.0, f"buckets {bounds}: need <= 5 ms and >= 1 s bounds"


def test_counts_and_buckets_match_what_was_fed(sub):
    """300 requests: counts by outcome, every bucket, _count and _sum"""
    prepare()
    m = sub.ServiceMetrics()
    feed(m, _CASES[0])
    check_case(parse(m.exposition()), _CASES[0])


def test_counters_never_go_down_and_gauge_tracks_in_flight(sub):
    """scraped every 50 requests: counters monotonic; gauge = started - finished"""
    prepare()
    m, case, last = sub.ServiceMetrics(), _CASES[0], {}
    for start in range(0, 300, 50):
        feed(m, case, start, start + 50)
        m.started()
        fams = parse(m.exposition())
        now = counts_of(fams)
        assert all(now.get(o, 0) >= last.get(o, 0) for o in OUTCOMES), f"a counter went down: {last} -> {now}"
        gauge = [s[2] for s in fams["service_in_flight"]["samples"]]
        assert gauge == [start // 50 + 1], f"in_flight {gauge}, expected {start // 50 + 1} started, not finished"
        last = now


def test_label_values_are_bounded(sub):
    """an unknown outcome raises ValueError and adds no series"""
    m = sub.ServiceMetrics()
    m.started()
    try:
        m.finished("user-12345", 0.01)
    except ValueError:
        pass
    else:
        raise AssertionError("finished('user-12345', ...) must raise ValueError: label values are a fixed set")
    assert "user-12345" not in m.exposition().decode(), "the unknown outcome became a time series"


def test_one_registry_and_one_http_server(sub):
    """serve() once; updates create no registry, thread or server; the HTTP scrape agrees"""
    prepare()
    m, case = sub.ServiceMetrics(), _CASES[0]
    registry = m.registry
    url = m.serve(free_port())
    try:
        threads = threading.active_count()
        feed(m, case)
        assert m.registry is registry, "a new registry was created after __init__"
        assert threading.active_count() == threads, "updates started threads (an HTTP server per update?)"
        text = urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=5).read()
        check_case(parse(text), case)
    finally:
        m.close()
    other = sub.ServiceMetrics()
    assert other.registry is not registry and counts_of(parse(other.exposition())).get("ok", 0) == 0


EXERCISE = Exercise(
    name="prometheus_metrics", title="Exercise · Prometheus metrics for a service", task=TASK, stub=STUB,
    tests=(test_types_names_and_buckets, test_counts_and_buckets_match_what_was_fed,
           test_counters_never_go_down_and_gauge_tracks_in_flight, test_label_values_are_bounded,
           test_one_registry_and_one_http_server),
    prepare=prepare, protected_modules=("labkit.serve.telemetry",),
)
