"""Replicas on one machine: N model-server processes, each with its share of the cores, behind the balancer.

    with ReplicaSet(ServeConfig(), n=2, policy="least_outstanding") as rs:
        run_open_loop(rs.predict_url, bodies, rate=200, duration_s=5)
        rs.kill(1)            # a replica dies; the balancer's health checks take it out
        rs.restart(1)         # same port; the health checks put it back

`labkit serve --replicas N` calls serve_replicas(), which runs the balancer in the foreground.
Taught in 10_load_balancing_and_flow_control.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import sys
import time
import urllib.request
from typing import Mapping, Sequence

from labkit.serve.balancer import BalancerConfig, config_to_args, run_balancer
from labkit.serve.config import ServeConfig
from labkit.serve.process import ServerProcess


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def replica_configs(config: ServeConfig, replicas: int, threads: int | None = None,
                    per_replica: Mapping[int, dict] | None = None) -> list[ServeConfig]:
    """One config per replica; threads defaults to cores // replicas so N replicas never oversubscribe."""
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1; got {replicas}")
    threads = threads or max(1, usable_cores() // replicas)
    per_replica = dict(per_replica or {})
    if bad := [i for i in per_replica if not 0 <= i < replicas]:
        raise ValueError(f"per_replica names replicas {bad}; valid indices are 0..{replicas - 1}")
    return [config.replace(threads=threads, **per_replica.get(i, {})) for i in range(replicas)]


def _start_together(things: Sequence) -> list:
    """Call .start() on all at once (model loading overlaps); if any fails, .stop() them all and raise."""
    with concurrent.futures.ThreadPoolExecutor(len(things)) as pool:
        errors = [f.exception() for f in [pool.submit(t.start) for t in things]]
    if any(errors):
        for t in things:
            t.stop()
        raise next(e for e in errors if e)
    return list(things)


def start_servers(configs: Sequence[ServeConfig], startup_timeout_s: float = 120.0) -> list[ServerProcess]:
    """One started ServerProcess per config."""
    return _start_together([ServerProcess(c, startup_timeout_s=startup_timeout_s) for c in configs])


class BalancerProcess(ServerProcess):
    """`python -m labkit.serve.balancer` as a subprocess, with ServerProcess' start/stop/kill guarantees."""
    log_name = "balancer"

    def __init__(self, backends: Sequence[str], config: BalancerConfig = BalancerConfig(),
                 port: int | None = None, startup_timeout_s: float = 60.0):
        super().__init__(port=port, startup_timeout_s=startup_timeout_s)
        self.backends, self.balancer_config = list(backends), config

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "labkit.serve.balancer", "--host", self.host, "--port", str(self.port),
                *config_to_args(self.balancer_config), *self.backends]

    def __repr__(self) -> str:
        return f"BalancerProcess({self.url} -> {len(self.backends)} replicas, {self.balancer_config.policy})"


class ReplicaSet:
    """N replicas + a balancer process; a context manager that never leaves a process behind."""

    def __init__(self, config: ServeConfig = ServeConfig(), n: int = 2, policy: str = "least_outstanding", *,
                 threads: int | None = None, per_replica: Mapping[int, dict] | None = None,
                 balancer: BalancerConfig | None = None):
        self.configs = replica_configs(config, n, threads, per_replica)
        self.balancer_config = balancer or BalancerConfig(policy=policy)
        self.servers: list[ServerProcess] = []
        self.balancer: BalancerProcess | None = None

    @property
    def url(self) -> str:
        return self.balancer.url

    @property
    def predict_url(self) -> str:
        return f"{self.balancer.url}/predict"

    @property
    def replica_urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def start(self) -> ReplicaSet:
        self.servers = start_servers(self.configs)
        try:
            self.use_balancer(self.balancer_config)
        except BaseException:
            self.stop()
            raise
        return self

    def use_balancer(self, config: BalancerConfig) -> None:
        """Replace the balancer (policy, flow control) in front of the same, still running replicas."""
        if self.balancer is not None:
            self.balancer.stop()
        self.balancer_config = config
        self.balancer = BalancerProcess(self.replica_urls, config).start()

    def kill(self, i: int) -> None:
        """SIGKILL replica i mid-flight (what a crash or an OOM kill looks like to the balancer)."""
        self.servers[i].kill()

    def restart(self, i: int) -> None:
        """Start replica i again on its old port; the balancer's health checks put it back in rotation."""
        old = self.servers[i]
        old.stop()
        self.servers[i] = ServerProcess(old.config, port=old.port, startup_timeout_s=old.startup_timeout_s).start()

    def stats(self) -> dict:
        """The balancer's GET /stats: per-replica served / outstanding / healthy, retries, its own answers."""
        with urllib.request.urlopen(f"{self.url}/stats", timeout=5) as resp:
            return json.loads(resp.read())

    def wait_idle(self, timeout_s: float = 120.0) -> float:
        """Block until the balancer has nothing in flight (a backlog left by an overload run has drained)."""
        start = time.monotonic()
        while self.stats()["in_flight"] > 0:
            if time.monotonic() - start > timeout_s:
                raise TimeoutError(f"{self.stats()['in_flight']} requests still in flight after {timeout_s:g} s")
            time.sleep(0.1)
        return time.monotonic() - start

    def stop(self) -> None:
        for proc in [self.balancer, *self.servers]:
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.stop()

    def __enter__(self) -> ReplicaSet:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ReplicaSet({len(self.configs)} replicas x {self.configs[0].threads} threads, " \
               f"{self.balancer_config.policy})"


def start_all(sets: Sequence[ReplicaSet]) -> list[ReplicaSet]:
    """Start several ReplicaSets at once; on any failure stop them all."""
    return _start_together(sets)


def serve_replicas(config: ServeConfig, replicas: int, host: str = "127.0.0.1", port: int = 8000,
                   balancer: BalancerConfig = BalancerConfig()) -> int:
    """`labkit serve --replicas N`: N servers on free loopback ports, the balancer on host:port; until Ctrl-C."""
    configs = replica_configs(config, replicas)
    servers = start_servers(configs)
    try:
        for s in servers:
            print(f"replica pid {s.pid} at {s.url} ({s.config.threads} threads)", flush=True)
        return run_balancer([s.url for s in servers], balancer, host, port)
    finally:
        for s in servers:
            s.stop()
