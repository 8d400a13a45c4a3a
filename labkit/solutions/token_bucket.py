import threading
import time


class TokenBucket:
    def __init__(self, rate_per_s, burst, clock=time.monotonic):
        if not rate_per_s > 0:
            raise ValueError(f"rate_per_s must be > 0; got {rate_per_s}")
        if not burst >= 1:
            raise ValueError(f"burst must be >= 1; got {burst}")
        self.rate_per_s, self.burst, self.clock = float(rate_per_s), float(burst), clock
        self.tokens, self.last = float(burst), clock()   # starts full
        self.lock = threading.Lock()                      # refill + check + take must be one atomic step

    def try_acquire(self, n=1):
        """0.0 if n tokens were taken, else the seconds until n tokens will be available (nothing taken)."""
        if not 0 < n <= self.burst:
            raise ValueError(f"n must be in (0, burst={self.burst:g}]; got {n}")
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate_per_s)
            self.last = max(self.last, now)
            if self.tokens >= n:
                self.tokens -= n
                return 0.0
            return (n - self.tokens) / self.rate_per_s
