"""Hidden tests for prometheus_metrics: 2000 requests from four threads, scraped over HTTP twice."""
import threading
import urllib.request

from labkit.exercises.prometheus_metrics import _CASES, check_case, counts_of, feed, parse, prepare
from labkit.serve.process import free_port


def test_hidden_threads_and_two_scrapes(sub):
    """four threads feed 2000 requests; two HTTP scrapes; the second holds every request, none twice"""
    prepare()
    m, case = sub.ServiceMetrics(), _CASES[1]
    url = m.serve(free_port()).rstrip("/") + "/metrics"
    try:
        first = counts_of(parse(urllib.request.urlopen(url, timeout=5).read()))
        workers = [threading.Thread(target=feed, args=(m, case, i * 500, (i + 1) * 500)) for i in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        second = parse(urllib.request.urlopen(url, timeout=5).read())
        assert all(counts_of(second).get(o, 0) >= first.get(o, 0) for o in first)
        check_case(second, case)
        assert [s[2] for s in second["service_in_flight"]["samples"]] == [0.0], "in_flight must be back to 0"
    finally:
        m.close()


TESTS = (test_hidden_threads_and_two_scrapes,)
