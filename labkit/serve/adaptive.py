"""An adaptive concurrency limit: how many requests to admit, learned from their latency (no load test needed).

A fixed queue limit is a guess: 256 admitted requests on a server that answers 8,000 a second is 32 ms of queue
before the first byte of work, at every overload. A gradient limit (Netflix's concurrency-limits `Gradient2`,
Envoy's adaptive concurrency filter) compares the recent latency with the latency without queueing: while
they agree, the limit grows by a small queue allowance (sqrt(limit)); when recent latency rises above
`tolerance` x the baseline (requests queue), the limit shrinks in proportion, at once (as Envoy does: a surge
must be met within milliseconds, or it fills the old limit first). The baseline is the lowest recent average,
allowed to creep up slowly (it doubles in about 3,500 updates) so a lasting change of the work per request is
learned rather than fought. While the traffic uses less than half the limit, the limit decays toward twice
what is in use: a limit far above the demand protects nothing, since the next surge fills it before any
latency is seen. It never goes below `min_limit` nor above `max_limit` (the fixed queue limit). Taught in
09_async_serving (§7).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class GradientConfig:
    """The gradient limit's knobs, with Gradient2's defaults where they apply."""
    initial_limit: int = 64
    min_limit: int = 16
    max_limit: int = 256
    smoothing: float = 0.2       # how far one update moves the limit toward its new estimate
    tolerance: float = 1.5       # short-term latency may exceed the long-term one by this factor before shrinking
    short_window: int = 64       # samples in the short-term average (about one or two batches)
    creep: float = 1.0002        # the baseline may rise by this factor per update (x2 in ~3,500 updates)
    idle_decay: float = 0.2      # app-limited: how far one update moves the limit toward twice the use

    def __post_init__(self) -> None:
        if not 1 <= self.min_limit <= self.initial_limit <= self.max_limit:
            raise ValueError(f"need 1 <= min_limit <= initial_limit <= max_limit; got {self.min_limit}, "
                             f"{self.initial_limit}, {self.max_limit}")
        if not (0 < self.smoothing <= 1 and self.tolerance >= 1 and self.short_window >= 1 and self.creep >= 1
                and 0 <= self.idle_decay <= 1):
            raise ValueError("need 0 < smoothing <= 1, tolerance >= 1, short_window >= 1, creep >= 1, "
                             "0 <= idle_decay <= 1")


class GradientLimit:
    """The limit, updated once per `short_window` answered requests from their latencies."""

    def __init__(self, config: GradientConfig = GradientConfig()):
        self.config = config
        self.estimate = float(config.initial_limit)
        self.baseline_s = math.inf         # latency without queueing: the lowest recent short-window average
        self._sum_s, self._n = 0.0, 0      # the short window being filled
        self.history: list[tuple[float, float, float]] = []  # (limit, short_s, baseline_s) per update, for plots

    @property
    def limit(self) -> int:
        return int(self.estimate)

    def observe(self, latency_s: float, in_flight: int) -> None:
        """One answered request's latency, with the number of requests in flight when it was answered."""
        self._sum_s += latency_s
        self._n += 1
        if self._n < self.config.short_window:
            return
        short_s, self._sum_s, self._n = self._sum_s / self._n, 0.0, 0
        self._update(short_s, in_flight)

    def _update(self, short_s: float, in_flight: int) -> None:
        c = self.config
        self.baseline_s = min(short_s, self.baseline_s * c.creep)
        if in_flight < self.estimate / 2:  # app-limited: the latency says nothing about the limit; follow the use
            new = (1 - c.idle_decay) * self.estimate + c.idle_decay * 2 * in_flight
            self.estimate = min(self.estimate, max(c.min_limit, new))
            return
        gradient = max(0.5, min(1.0, c.tolerance * self.baseline_s / short_s))
        new = self.estimate * gradient + math.sqrt(self.estimate)  # the queue allowance lets the limit probe up
        if new > self.estimate:  # grow smoothly; shrink at once
            new = (1 - c.smoothing) * self.estimate + c.smoothing * new
        self.estimate = min(c.max_limit, max(c.min_limit, new))
        self.history.append((self.estimate, short_s, self.baseline_s))
        del self.history[:-10_000]
