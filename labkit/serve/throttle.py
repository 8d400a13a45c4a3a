"""Client-side adaptive throttling (the Google SRE book, "Handling Overload"): a client that sees its requests
refused stops sending most of what would be refused.

Over a sliding window the client counts `requests` (everything the application asked it to send) and `accepts`
(answers that were not a 429/503). While accepts keep up, nothing changes; once requests exceed k x accepts, each
new request is refused locally with probability max(0, (requests - k * accepts) / (requests + 1)). With k = 2 the
server still sees about twice what it accepts (enough to notice when it recovers) and the rest never costs it a
read. Used by the course's load generator and balancer. Taught in 09_async_serving (§7).
"""
from __future__ import annotations

import random
import time
from collections import deque
from typing import Callable


class AdaptiveThrottle:
    """allow() before each request, record(accepted) after its answer."""

    def __init__(self, k: float = 2.0, window_s: float = 5.0, bucket_s: float = 0.25, seed: int = 0,
                 clock: Callable[[], float] = time.monotonic):
        if not k >= 1 or not window_s > 0 or not 0 < bucket_s <= window_s:
            raise ValueError(f"need k >= 1 and 0 < bucket_s <= window_s; got k={k}, window_s={window_s}, "
                             f"bucket_s={bucket_s}")
        self.k, self.window_s, self.bucket_s, self.clock = k, window_s, bucket_s, clock
        self._rng = random.Random(seed)
        self._buckets: deque[list] = deque()  # [bucket start, requests, accepts], oldest left
        self.requests = self.accepts = 0       # totals over the window
        self.throttled = 0                     # refused locally, ever

    def _bucket(self) -> list:
        now = self.clock()
        while self._buckets and now - self._buckets[0][0] >= self.window_s:
            _, requests, accepts = self._buckets.popleft()
            self.requests -= requests
            self.accepts -= accepts
        if not self._buckets or now - self._buckets[-1][0] >= self.bucket_s:
            self._buckets.append([now, 0, 0])
        return self._buckets[-1]

    def reject_probability(self) -> float:
        return max(0.0, (self.requests - self.k * self.accepts) / (self.requests + 1))

    def allow(self) -> bool:
        """Count the request; False means: do not send it (refused locally)."""
        bucket = self._bucket()
        bucket[1] += 1
        self.requests += 1
        if self._rng.random() < self.reject_probability():
            self.throttled += 1
            return False
        return True

    def record(self, accepted: bool) -> None:
        """The server's answer to a request that was sent: accepted unless it was refused (429/503)."""
        if accepted:
            self._bucket()[2] += 1
            self.accepts += 1
