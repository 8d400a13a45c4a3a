"""Flow control: a per-client token bucket, a global admission limit, and shedding by deadline.

Each check answers at once (allow, or reject with the seconds after which a retry may succeed): an overloaded
service that queues without bound turns every request slow; one that says "no, retry in 0.2 s" keeps the
requests it admits fast. Taught in 10_load_balancing_and_flow_control.
"""
from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable


class TokenBucket:
    """`rate_per_s` permits per second on average, at most `burst` at once; thread-safe, injectable clock."""

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic):
        if not rate_per_s > 0:
            raise ValueError(f"rate_per_s must be > 0; got {rate_per_s}")
        if not burst >= 1:
            raise ValueError(f"burst must be >= 1 (one request must fit); got {burst}")
        self.rate_per_s, self.burst, self._clock = float(rate_per_s), float(burst), clock
        self._tokens, self._last = float(burst), clock()   # starts full: a new client may burst at once
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        # max(): a clock that steps back must not drain the bucket
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._last) * self.rate_per_s)
        self._last = max(self._last, now)

    def try_acquire(self, n: float = 1.0) -> float:
        """Take n permits and return 0.0, or take none and return the seconds until n will be available."""
        if not 0 < n <= self.burst:
            raise ValueError(f"n must be in (0, burst={self.burst:g}]; got {n}")
        with self._lock:
            self._refill()
            if self._tokens >= n:
                self._tokens -= n
                return 0.0
            return (n - self._tokens) / self.rate_per_s

    @property
    def tokens(self) -> float:
        """Permits available now."""
        with self._lock:
            self._refill()
            return self._tokens


class ClientLimiter:
    """One token bucket per client id; keeps the `max_clients` most recently seen (memory stays bounded)."""

    def __init__(self, rate_per_s: float, burst: float, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        if max_clients < 1:
            raise ValueError(f"max_clients must be >= 1; got {max_clients}")
        TokenBucket(rate_per_s, burst, clock)  # validates the settings up front
        self.rate_per_s, self.burst, self.max_clients, self._clock = rate_per_s, burst, max_clients, clock
        self._buckets: collections.OrderedDict[str, TokenBucket] = collections.OrderedDict()
        self._lock = threading.Lock()

    def try_acquire(self, client: str) -> float:
        """0.0 when the client may go now, else its Retry-After in seconds."""
        with self._lock:
            bucket = self._buckets.pop(client, None) or TokenBucket(self.rate_per_s, self.burst, self._clock)
            self._buckets[client] = bucket  # most recent last
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return bucket.try_acquire()


class ThroughputMeter:
    """Completions per second over a sliding window; with the number in flight, predicts a new request's wait."""

    def __init__(self, window_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0; got {window_s}")
        self.window_s, self._clock = window_s, clock
        self._done: collections.deque[float] = collections.deque()

    def record(self) -> None:
        self._done.append(self._clock())

    def rate_per_s(self) -> float:
        cutoff = self._clock() - self.window_s
        while self._done and self._done[0] < cutoff:
            self._done.popleft()
        return len(self._done) / self.window_s

    def expected_ms(self, in_flight: int) -> float:
        """Little's law: a request joining `in_flight` others finishes after about (in_flight + 1) / rate."""
        rate = self.rate_per_s()
        if in_flight == 0 or rate == 0:
            return 0.0  # idle, or no evidence yet: admit (optimistic) rather than shed blindly
        return (in_flight + 1) / rate * 1e3


@dataclass(frozen=True)
class FlowConfig:
    max_in_flight: int | None = None      # global admission limit (requests admitted and not yet answered)
    client_rate_per_s: float | None = None  # per-client token bucket rate; None = no per-client limit
    client_burst: float = 10.0            # bucket size: requests a quiet client may send at once
    shed_by_deadline: bool = True         # reject at once a request whose deadline_ms the wait would exceed
    window_s: float = 1.0                 # throughput window for the deadline estimate

    def __post_init__(self):
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1 or None; got {self.max_in_flight}")
        if self.client_rate_per_s is not None and not self.client_rate_per_s > 0:
            raise ValueError(f"client_rate_per_s must be > 0 or None; got {self.client_rate_per_s}")
        if not self.client_burst >= 1:
            raise ValueError(f"client_burst must be >= 1; got {self.client_burst}")


@dataclass(frozen=True)
class Decision:
    """Admit (status 0) or reject with an HTTP status, a short code and a Retry-After in seconds."""
    status: int = 0
    code: str = ""
    error: str = ""
    retry_after_s: float = 0.0

    @property
    def admitted(self) -> bool:
        return self.status == 0

    def retry_after_header(self) -> str:
        """Retry-After is whole seconds in HTTP (RFC 9110): round up, never 0 for a rejection."""
        return str(max(1, math.ceil(self.retry_after_s)))


ADMIT = Decision()


class FlowController:
    """The order of checks at the door: client rate -> deadline -> global limit. Call release() once per admit."""

    def __init__(self, config: FlowConfig = FlowConfig(), clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.in_flight = 0
        self.meter = ThroughputMeter(config.window_s, clock)
        self.clients = (ClientLimiter(config.client_rate_per_s, config.client_burst, clock=clock)
                        if config.client_rate_per_s else None)
        self._lock = threading.Lock()

    def admit(self, client: str = "", deadline_ms: float | None = None) -> Decision:
        """ADMIT (and count the request in flight) or a rejection to send back at once."""
        if self.clients is not None:
            wait_s = self.clients.try_acquire(client)
            if wait_s > 0:
                return Decision(429, "rate_limited", f"client {client!r} is over "
                                f"{self.config.client_rate_per_s:g} requests/s", wait_s)
        with self._lock:
            if deadline_ms is not None and self.config.shed_by_deadline:
                expected_ms = self.meter.expected_ms(self.in_flight)
                if expected_ms > deadline_ms:
                    return Decision(503, "deadline", f"deadline_ms={deadline_ms:g} cannot be met: expected "
                                    f"wait {expected_ms:.0f} ms", expected_ms / 1e3)
            limit = self.config.max_in_flight
            if limit is not None and self.in_flight >= limit:
                return Decision(429, "overloaded", f"{self.in_flight} requests in flight (max_in_flight="
                                f"{limit})", self._drain_s())
            self.in_flight += 1
        return ADMIT

    def release(self, completed: bool = True) -> None:
        """An admitted request has been answered; `completed` ones feed the throughput estimate."""
        with self._lock:
            if self.in_flight <= 0:
                raise RuntimeError("release() without a matching admitted request")
            self.in_flight -= 1
            if completed:
                self.meter.record()

    def _drain_s(self) -> float:
        rate = self.meter.rate_per_s()
        return 1.0 / rate if rate > 0 else 1.0  # one slot frees after about 1/rate seconds
