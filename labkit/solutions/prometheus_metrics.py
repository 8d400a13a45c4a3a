from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

OUTCOMES = ("ok", "error", "rejected")
LATENCY_BUCKETS_S = (.001, .002, .005, .01, .02, .05, .1, .2, .5, 1.0, 2.0, 5.0)  # a millisecond service


class ServiceMetrics:
    def __init__(self):
        self.registry = r = CollectorRegistry()       # one registry, made once
        requests = Counter("service_requests", "Requests by outcome", ["outcome"], registry=r)
        self.requests = {o: requests.labels(outcome=o) for o in OUTCOMES}  # the only label values
        self.in_flight = Gauge("service_in_flight", "Requests started, not finished", registry=r)
        self.latency = Histogram("service_latency_seconds", "Request latency", buckets=LATENCY_BUCKETS_S,
                                 registry=r)
        self._server = None

    def started(self):
        self.in_flight.inc()

    def finished(self, outcome, latency_s):
        if outcome not in self.requests:
            raise ValueError(f"outcome must be one of {OUTCOMES}; got {outcome!r}")
        self.in_flight.dec()
        self.requests[outcome].inc()
        self.latency.observe(latency_s)

    def exposition(self):
        return generate_latest(self.registry)

    def serve(self, port):
        if self._server is None:                       # one exporter per process, started once
            self._server = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        return f"http://127.0.0.1:{self._server[0].server_port}"

    def close(self):
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join(5)
            self._server = None
