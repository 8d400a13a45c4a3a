"""Hidden tests for bug_prometheus_push: two scrapes, counters never go down."""
import urllib.request

from labkit.exercises.prometheus_metrics import parse
from labkit.serve.process import free_port


def test_hidden_counters_monotonic_between_scrapes(sub):
    """scrape, record 10 more, scrape: every outcome's count grew by what was recorded"""
    port = free_port()
    m = sub.RequestMetrics(port)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        for _ in range(5):
            m.record("ok", 0.01)
        first = parse(urllib.request.urlopen(url, timeout=5).read())
        for _ in range(10):
            m.record("ok", 0.02)
        second = parse(urllib.request.urlopen(url, timeout=5).read())
        get = lambda f: [s[2] for s in f["app_requests"]["samples"] if s[0] == "app_requests_total"]
        assert get(first) == [5.0] and get(second) == [15.0], (get(first), get(second))
    finally:
        m.close()


TESTS = (test_hidden_counters_monotonic_between_scrapes,)
