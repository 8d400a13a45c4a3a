"""The server's Prometheus metrics: what it records per request and per batch, and reading /metrics back.

Counters, gauges and histograms used as Prometheus intends: counts only go up (rates come from the
scraper), the in-flight gauge goes up and down, latencies land in fixed buckets. Taught in 09_async_serving.
"""
from __future__ import annotations

import time
import urllib.request

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

OUTCOMES = ("ok", "bad_input", "too_large", "queue_full", "deadline", "draining", "loading", "error",
            "disconnected", "timeout")  # disconnected: the client left before its answer could be sent; timeout: 408
LATENCY_BUCKETS_S = (.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (two apps in one process never collide)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        requests = Counter("labkit_requests", "Predict requests by outcome", ["outcome"], registry=r)
        self.outcome = {name: requests.labels(outcome=name) for name in OUTCOMES}  # children made once
        self.in_flight = Gauge("labkit_in_flight", "Admitted predict requests not yet answered", registry=r)
        self.latency = Histogram("labkit_request_latency_seconds", "Predict latency, admission to answer",
                                 buckets=LATENCY_BUCKETS_S, registry=r)
        self.batch_size = Histogram("labkit_batch_size", "Rows per forward", buckets=BATCH_BUCKETS, registry=r)
        self.forward = Histogram("labkit_forward_seconds", "Seconds per forward", buckets=LATENCY_BUCKETS_S,
                                 registry=r)
        self.late = Counter("labkit_deadline_late", "Answers sent after their deadline_ms (marked deadline_met: "
                            "false)", registry=r)
        self.cache_hits = Counter("labkit_cache_hits", "Inputs answered from the cache", registry=r)
        self.cache_misses = Counter("labkit_cache_misses", "Inputs the cache did not hold", registry=r)
        self.gc_pause = Histogram("labkit_gc_pause_seconds", "Cyclic garbage-collector passes, by generation",
                                  ["generation"], buckets=LATENCY_BUCKETS_S, registry=r)
        self._gc_start = 0.0

    def on_gc(self, phase: str, info: dict) -> None:
        """gc.callbacks hook: time every collector pass (the whole process stops for it)."""
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc_pause.labels(generation=str(info["generation"])).observe(time.perf_counter() - self._gc_start)

    def observe_batch(self, rows: int, seconds: float) -> None:
        self.batch_size.observe(rows)
        self.forward.observe(seconds)


def scrape_metrics(base_url: str) -> dict[str, float]:
    """A server's /metrics as {'name{label="v"}': value} (unlabelled samples keyed by bare name)."""
    text = urllib.request.urlopen(base_url.rstrip("/") + "/metrics", timeout=10).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out
