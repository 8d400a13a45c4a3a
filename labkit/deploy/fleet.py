"""A fleet of replica slots behind the course's balancer, run in-process, whose slots can be re-pointed.

The balancer (labkit.serve.balancer) routes to a fixed list of backend slots. A slot is re-pointed to a new
replica by changing its URL on the in-process Balancer: new requests go to the new replica at once, the old
one keeps answering what it already holds (the drain), and no request ever meets a closed socket. A slot
with no replica points at a port nobody listens on: the balancer's health checks take it out, and a request
routed there before they do is never sent, so the balancer retries it elsewhere.
Taught in 16_deployment_and_reliability.
"""
from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from typing import Sequence

from labkit.serve.balancer import BalancerConfig, serve_in_thread
from labkit.serve.config import ServeConfig
from labkit.serve.process import ServerProcess, free_port
from labkit.serve.replicas import start_servers


def replica_state(url: str, timeout_s: float = 2.0) -> dict:
    """GET /health of a replica as a dict (its body also on 503); {"status": "down"} when unreachable."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return json.loads(err.read() or b"{}")
    except OSError:
        return {"status": "down", "in_flight": 0}


def wait_drained(url: str, timeout_s: float = 30.0, poll_s: float = 0.01) -> float:
    """Seconds until the replica at url holds no request in flight (TimeoutError past timeout_s)."""
    start = time.perf_counter()
    while replica_state(url).get("in_flight", 0) > 0:
        if time.perf_counter() - start > timeout_s:
            raise TimeoutError(f"{url} still has requests in flight after {timeout_s:g} s")
        time.sleep(poll_s)
    return time.perf_counter() - start


class Fleet:
    """`slots` backend slots behind an in-process balancer; `active` of them start with a replica each."""

    def __init__(self, config: ServeConfig, slots: int = 2, active: int | None = None,
                 balancer: BalancerConfig | None = None, startup_timeout_s: float = 240.0):
        active = slots if active is None else active
        if not 1 <= active <= slots:
            raise ValueError(f"need 1 <= active <= slots; got active={active}, slots={slots}")
        self.config, self.slots, self.startup_timeout_s = config, slots, startup_timeout_s
        self.balancer_config = balancer or BalancerConfig(health_interval_s=0.1, connect_retries=slots)
        self.servers: list[ServerProcess | None] = [None] * slots
        self._initial = active
        self._stack = contextlib.ExitStack()
        self.running = None   # labkit.serve.balancer.RunningBalancer once started

    @property
    def predict_url(self) -> str:
        return f"{self.running.url}/predict"

    @property
    def active(self) -> int:
        return sum(s is not None for s in self.servers)

    def start(self) -> Fleet:
        started = start_servers([self.config] * self._initial, self.startup_timeout_s)
        self.servers[:self._initial] = started
        urls = [s.url for s in started] + [_nowhere() for _ in range(self.slots - self._initial)]
        self.running = self._stack.enter_context(serve_in_thread(urls, self.balancer_config))
        self.wait_routing()
        return self

    def wait_routing(self, timeout_s: float = 10.0) -> None:
        """Block until the balancer's health view matches the slots that hold a replica."""
        deadline = time.monotonic() + timeout_s
        want = [s is not None for s in self.servers]
        while [r.healthy for r in self.running.balancer.replicas] != want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"balancer health {self.healthy()} != slots holding a replica {want}")
            time.sleep(0.02)

    def healthy(self) -> list[bool]:
        return [r.healthy for r in self.running.balancer.replicas]

    def point(self, slot: int, server: ServerProcess | None) -> ServerProcess | None:
        """Route slot to `server` (None: to nowhere) from now on; returns the replica it held before."""
        old, self.servers[slot] = self.servers[slot], server
        self.running.balancer.replicas[slot].url = server.url if server is not None else _nowhere()
        return old

    def launch(self, config: ServeConfig | None = None) -> ServerProcess:
        """Start one replica (not yet routed): this is the cold start a scale-up or an update pays."""
        return ServerProcess(config or self.config, startup_timeout_s=self.startup_timeout_s).start()

    def retire(self, server: ServerProcess, drain_timeout_s: float = 30.0) -> dict:
        """Wait until `server` answered what it holds, then SIGTERM it; seconds of each."""
        drain_s = wait_drained(server.url, drain_timeout_s)
        start = time.perf_counter()
        server.stop()
        return {"drain_s": drain_s, "stop_s": time.perf_counter() - start}

    def stop(self) -> None:
        self._stack.close()
        for server in self.servers:
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()
        self.servers = [None] * self.slots

    def __enter__(self) -> Fleet:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def _nowhere() -> str:
    """The URL of a loopback port nobody listens on (connects are refused: the request is never sent)."""
    return f"http://127.0.0.1:{free_port()}"


def versions(servers: Sequence[ServerProcess | None]) -> list[str]:
    """GET /version of each replica (needs the labkit.deploy.versions extension); "-" for an empty slot."""
    out = []
    for s in servers:
        if s is None:
            out.append("-")
            continue
        with urllib.request.urlopen(f"{s.url}/version", timeout=2) as resp:
            out.append(json.loads(resp.read())["version"])
    return out
