"""Elastic scaling on queue depth: add a replica when requests pile up, remove one when they do not.

A control loop reads the balancer's outstanding requests per active replica every interval_s. Above
high_outstanding it starts one more replica (a cold start: it takes traffic only once healthy); below
low_outstanding for down_after intervals in a row it takes one out of rotation, lets it drain, and stops it.
Taught in 16_deployment_and_reliability.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from labkit.deploy.fleet import Fleet


@dataclass(frozen=True)
class ScalerConfig:
    min_replicas: int = 1
    max_replicas: int = 3
    interval_s: float = 0.25        # how often the scaler looks
    high_outstanding: float = 4.0   # mean requests in flight per replica above this: scale up
    low_outstanding: float = 0.5    # below this for down_after looks in a row: scale down
    down_after: int = 8
    up_after: int = 2               # busy looks in a row before a scale-up (one burst does not start a replica)

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"need 1 <= min_replicas <= max_replicas; got {self.min_replicas}, {self.max_replicas}")
        if not 0 <= self.low_outstanding < self.high_outstanding or self.interval_s <= 0 or self.down_after < 1 or self.up_after < 1:
            raise ValueError("need 0 <= low < high outstanding, interval_s > 0, down_after >= 1")


def decide(busy_looks: int, active: int, pending: bool, calm_looks: int, config: ScalerConfig) -> int:
    """+1 (start one), -1 (retire one) or 0, from the recent busy looks (mean outstanding per replica above
    high_outstanding) and calm looks (below low_outstanding) in a row."""
    if pending:
        return 0    # one change at a time: wait until the last one took effect
    if busy_looks >= config.up_after and active < config.max_replicas:
        return 1
    if calm_looks >= config.down_after and active > config.min_replicas:
        return -1
    return 0


class Scaler:
    """Runs decide() over a Fleet on a thread; `history` holds (t_s, active, outstanding) per look."""

    def __init__(self, fleet: Fleet, config: ScalerConfig = ScalerConfig()):
        if fleet.slots < config.max_replicas:
            raise ValueError(f"the fleet has {fleet.slots} slots; max_replicas is {config.max_replicas}")
        self.fleet, self.config = fleet, config
        self.history: list[dict] = []
        self.events: list[dict] = []
        self._stop, self._pending = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="labkit-scaler", daemon=True)
        self._workers: list[threading.Thread] = []
        self.t0 = 0.0

    def start(self, t0: float | None = None) -> Scaler:
        self.t0 = time.perf_counter() if t0 is None else t0
        self._thread.start()
        return self

    def _loop(self) -> None:
        calm = busy = 0
        while not self._stop.wait(self.config.interval_s):
            replicas = self.fleet.running.balancer.replicas
            active = self.fleet.active
            outstanding = sum(r.outstanding for r in replicas)
            per = outstanding / max(active, 1)
            calm = calm + 1 if per < self.config.low_outstanding else 0
            busy = busy + 1 if per > self.config.high_outstanding else 0
            self.history.append({"t_s": time.perf_counter() - self.t0, "active": active,
                                 "outstanding": outstanding})
            step = decide(busy, active, self._pending.is_set(), calm, self.config)
            if step:
                calm = busy = 0
                self._pending.set()
                worker = threading.Thread(target=self._up if step > 0 else self._down, daemon=True)
                self._workers.append(worker)
                worker.start()

    def _up(self) -> None:
        try:
            asked = time.perf_counter()
            server = self.fleet.launch()
            slot = self.fleet.servers.index(None)
            self.fleet.point(slot, server)
            self.events.append({"t_s": asked - self.t0, "change": "+1", "slot": slot,
                                "seconds": time.perf_counter() - asked})
        finally:
            self._pending.clear()

    def _down(self) -> None:
        try:
            asked = time.perf_counter()
            slot = max(i for i, s in enumerate(self.fleet.servers) if s is not None)
            old = self.fleet.point(slot, None)
            timing = self.fleet.retire(old)
            self.events.append({"t_s": asked - self.t0, "change": "-1", "slot": slot,
                                "seconds": time.perf_counter() - asked, **timing})
        finally:
            self._pending.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for worker in self._workers:
            worker.join()
