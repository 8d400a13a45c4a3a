from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, start_http_server


class RequestMetrics:
    def __init__(self, port):
        # one registry and one exporter for the process, made once; Prometheus scrapes it, Grafana asks Prometheus
        self.registry = CollectorRegistry()
        self.requests = Counter("app_requests", "Requests by outcome", ["outcome"], registry=self.registry)
        self.latency = Histogram("app_latency_seconds", "Request latency", registry=self.registry)
        self.server = start_http_server(port, addr="127.0.0.1", registry=self.registry)

    def record(self, outcome, latency_s):
        self.requests.labels(outcome=outcome).inc()   # a counter only goes up: inc(), never set()
        self.latency.observe(latency_s)

    def exposition(self):
        return generate_latest(self.registry)

    def close(self):
        if self.server is not None:
            server, thread = self.server
            server.shutdown()
            server.server_close()
            thread.join(5)
            self.server = None
