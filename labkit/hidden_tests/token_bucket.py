"""Hidden tests for token_bucket: fractional rates, n > 1, a clock that steps backwards."""
from labkit.exercises.token_bucket import FakeClock, _close


def test_hidden_fractional_rate_and_n(sub):
    """rate 0.5/s, burst 3: waits are (n - tokens) / rate for n > 1"""
    clock = FakeClock()
    bucket = sub.TokenBucket(rate_per_s=0.5, burst=3, clock=clock)
    assert bucket.try_acquire(3) == 0.0, "a full bucket of 3 grants n=3"
    assert _close(bucket.try_acquire(2), 4.0), "two tokens from empty at 0.5/s take 4 s"
    clock.t += 3.0                                   # 1.5 tokens back
    assert _close(bucket.try_acquire(2), 1.0), "with 1.5 tokens, the second is 1 s away at 0.5/s"
    clock.t += 1.0
    assert bucket.try_acquire(2) == 0.0, "after the announced wait, n=2 passes"


def test_hidden_clock_going_backwards_adds_nothing(sub):
    """a clock that steps back never creates tokens"""
    clock = FakeClock()
    bucket = sub.TokenBucket(rate_per_s=10.0, burst=2, clock=clock)
    bucket.try_acquire(2)
    clock.t -= 5.0
    assert bucket.try_acquire() > 0, "the clock went back 5 s: no token may appear"


TESTS = (test_hidden_fractional_rate_and_n, test_hidden_clock_going_backwards_adds_nothing)
