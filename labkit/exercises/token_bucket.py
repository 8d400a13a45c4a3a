"""Exercise: a token-bucket rate limiter, graded with an injected clock and under concurrency."""
import asyncio
import threading
import time

from labkit.grading.exercise import Exercise

TASK = """
A model server must refuse a client that sends faster than its quota, **at once** and with a useful
`Retry-After`, instead of queueing its requests behind everyone else's. Write the rate limiter it uses:

`TokenBucket(rate_per_s, burst, clock=time.monotonic)`

- the bucket holds up to `burst` tokens and **starts full**; it refills continuously at `rate_per_s` tokens per
  second of `clock()` time (a float in seconds; the grader injects a fake clock), never above `burst`;
- `try_acquire(n=1)` → `0.0` if `n` tokens were available (and takes them), otherwise takes **nothing** and
  returns the seconds until `n` tokens will be available (the `Retry-After`), exactly `(n - tokens) / rate_per_s`;
- `ValueError` (naming the argument) for `rate_per_s <= 0`, `burst < 1`, or `n` outside `(0, burst]`;
- **thread-safe**: many threads calling `try_acquire` at once never receive more than
  `rate_per_s × elapsed + burst` permits in total.

Worked version and where it sits in a balancer: `labkit/serve/flow.py`, notebook 10 §3.
"""

STUB = '''
import threading
import time


class TokenBucket:
    def __init__(self, rate_per_s, burst, clock=time.monotonic):
        raise NotImplementedError("TokenBucket.__init__")

    def try_acquire(self, n=1):
        """0.0 if n tokens were taken, else the seconds until n tokens will be available (nothing taken)."""
        raise NotImplementedError("TokenBucket.try_acquire")
'''


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 + 1e-6 * abs(b)


def test_starts_full_and_allows_a_burst(sub):
    """a new bucket grants `burst` requests at once, then refuses"""
    bucket = sub.TokenBucket(rate_per_s=5.0, burst=4, clock=FakeClock())
    got = [bucket.try_acquire() for _ in range(5)]
    assert got[:4] == [0.0] * 4, f"a full bucket of 4 must grant 4 requests at once; got {got[:4]}"
    assert got[4] > 0, f"the 5th request at the same instant must be refused with a positive wait; got {got[4]}"


def test_refills_at_rate_and_caps_at_burst(sub):
    """refill = rate × elapsed clock time, never above burst"""
    clock = FakeClock()
    bucket = sub.TokenBucket(rate_per_s=12.0, burst=5, clock=clock)
    for _ in range(5):
        bucket.try_acquire()
    clock.t += 0.25                                  # 3 tokens back (0.25 and 12 are exact in binary)
    granted = sum(bucket.try_acquire() == 0.0 for _ in range(5))
    assert granted == 3, f"after 0.25 s at 12 tokens/s, 3 requests should pass; {granted} did"
    clock.t += 3600                                  # idle for an hour: capped at burst
    granted = sum(bucket.try_acquire() == 0.0 for _ in range(10))
    assert granted == 5, f"after a long idle the bucket holds burst=5 tokens; {granted} requests passed"


def test_retry_after_is_exact_and_refusal_takes_nothing(sub):
    """retry_after = (n - tokens) / rate; waiting exactly that long succeeds"""
    clock = FakeClock()
    bucket = sub.TokenBucket(rate_per_s=4.0, burst=2, clock=clock)
    bucket.try_acquire(2)
    clock.t += 0.125                                 # half a token refilled
    wait = bucket.try_acquire()
    assert _close(wait, 0.125), f"with 0.5 tokens at 4/s, one token is 0.125 s away; got {wait}"
    wait_again = bucket.try_acquire()
    assert _close(wait_again, 0.125), f"a refused request must take no tokens; the wait changed to {wait_again}"
    clock.t += wait
    assert bucket.try_acquire() == 0.0, "after waiting Retry-After seconds the request must pass"
    wait_two = bucket.try_acquire(2)
    assert _close(wait_two, 0.5), f"two tokens from an empty bucket at 4/s take 0.5 s; got {wait_two}"


def test_bad_arguments_raise_value_error(sub):
    """rate_per_s <= 0, burst < 1, n outside (0, burst] -> ValueError naming it"""
    for kwargs, name in ((dict(rate_per_s=0, burst=1), "rate_per_s"), (dict(rate_per_s=-2, burst=3), "rate_per_s"),
                         (dict(rate_per_s=1, burst=0.5), "burst")):
        try:
            sub.TokenBucket(**kwargs)
        except ValueError as err:
            assert name in str(err), f"TokenBucket({kwargs}) raised ValueError without naming {name!r}: {err}"
        else:
            raise AssertionError(f"TokenBucket({kwargs}) must raise ValueError")
    bucket = sub.TokenBucket(rate_per_s=1, burst=2, clock=FakeClock())
    for n in (0, 3):
        try:
            bucket.try_acquire(n)
        except ValueError:
            continue
        raise AssertionError(f"try_acquire({n}) with burst=2 must raise ValueError (it could never succeed)")


def test_racing_threads_never_get_a_permit_twice(sub):
    """frozen clock, 8 threads, GIL switching forced every microsecond: exactly `burst` permits, 3 times"""
    import sys

    for trial in range(3):
        bucket = sub.TokenBucket(rate_per_s=1.0, burst=2000, clock=FakeClock())
        granted = [0] * 8

        def hammer(i):
            for _ in range(400):
                granted[i] += bucket.try_acquire() == 0.0

        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)       # switch threads as often as CPython allows: races become likely
        try:
            threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            sys.setswitchinterval(old)
        assert sum(granted) == 2000, (
            f"trial {trial}: 3200 racing attempts on a full bucket of 2000 with the clock frozen got "
            f"{sum(granted)} permits; refill, check and take must happen as one atomic step (a lock)")


def test_threads_never_exceed_rate_times_t_plus_burst(sub):
    """8 threads hammering for 0.3 s: permits <= rate × t + burst"""
    rate, burst = 300.0, 10
    bucket = sub.TokenBucket(rate_per_s=rate, burst=burst)
    granted, errors = [0] * 8, []
    start = time.monotonic()
    stop_at = start + 0.3

    def hammer(i):
        try:
            while time.monotonic() < stop_at:
                granted[i] += bucket.try_acquire() == 0.0
        except Exception as err:  # noqa: BLE001 - reported to the student below
            errors.append(repr(err))

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert not errors, f"try_acquire raised under concurrency: {errors[0]}"
    total, bound = sum(granted), rate * elapsed + burst
    assert total <= bound, f"{total} permits in {elapsed:.3f} s exceeds rate*t + burst = {bound:.1f}"
    assert total >= burst, f"only {total} permits granted in {elapsed:.3f} s; at least burst={burst} expected"


def test_asyncio_tasks_never_exceed_the_bound(sub):
    """200 tasks on one event loop: permits <= rate × t + burst, and all keep getting answers"""
    rate, burst = 500.0, 5

    async def main():
        bucket = sub.TokenBucket(rate_per_s=rate, burst=burst)
        start = time.monotonic()

        async def task():
            n = 0
            while time.monotonic() < start + 0.2:
                n += bucket.try_acquire() == 0.0
                await asyncio.sleep(0)
            return n

        counts = await asyncio.gather(*(task() for _ in range(200)))
        return sum(counts), time.monotonic() - start

    total, elapsed = asyncio.run(main())
    assert burst <= total <= rate * elapsed + burst, (
        f"{total} permits in {elapsed:.3f} s; expected between burst={burst} and {rate * elapsed + burst:.1f}")


EXERCISE = Exercise(
    name="token_bucket", title="Exercise · A token-bucket rate limiter", task=TASK, stub=STUB,
    tests=(test_starts_full_and_allows_a_burst, test_refills_at_rate_and_caps_at_burst,
           test_retry_after_is_exact_and_refusal_takes_nothing, test_bad_arguments_raise_value_error,
           test_racing_threads_never_get_a_permit_twice, test_threads_never_exceed_rate_times_t_plus_burst, test_asyncio_tasks_never_exceed_the_bound),
    protected_modules=('labkit.serve',),
)
