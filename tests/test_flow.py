"""Flow control: token bucket arithmetic (fake clock), concurrency bound, admission limit, deadline shedding."""
import threading
import time

import pytest

from labkit.serve.flow import ClientLimiter, Decision, FlowConfig, FlowController, ThroughputMeter, TokenBucket


class FakeClock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_bucket_starts_full_then_refuses_with_exact_retry_after():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2.0, burst=3, clock=clock)
    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_acquire() == pytest.approx(0.5)      # 1 token at 2/s
    clock.t += 0.25
    assert bucket.try_acquire() == pytest.approx(0.25)     # half a token refilled


def test_bucket_refills_at_rate_and_caps_at_burst():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10.0, burst=5, clock=clock)
    for _ in range(5):
        bucket.try_acquire()
    clock.t += 0.3
    assert bucket.tokens == pytest.approx(3.0)
    clock.t += 100
    assert bucket.tokens == pytest.approx(5.0)


def test_clock_stepping_back_does_not_drain_or_refill():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=1.0, burst=2, clock=clock)
    bucket.try_acquire()
    clock.t -= 50
    assert bucket.tokens == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs", [dict(rate_per_s=0, burst=1), dict(rate_per_s=1, burst=0.5),
                                    dict(rate_per_s=-1, burst=3)])
def test_bad_bucket_settings_are_named(kwargs):
    with pytest.raises(ValueError, match="rate_per_s|burst"):
        TokenBucket(**kwargs)


def test_asking_for_more_than_burst_is_an_error():
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1.0, 2).try_acquire(3)


def test_many_threads_never_get_more_than_rate_times_t_plus_burst():
    rate, burst, threads = 200.0, 20, 8
    bucket = TokenBucket(rate, burst)
    granted = [0] * threads
    start = time.monotonic()
    stop_at = start + 0.4

    def hammer(i):
        while time.monotonic() < stop_at:
            if bucket.try_acquire() == 0.0:
                granted[i] += 1

    workers = [threading.Thread(target=hammer, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - start
    assert burst <= sum(granted) <= rate * elapsed + burst


def test_racing_threads_get_exactly_burst_permits_from_a_frozen_bucket():
    import sys

    bucket = TokenBucket(rate_per_s=1.0, burst=2000, clock=FakeClock())
    granted = [0] * 8

    def hammer(i):
        for _ in range(400):
            granted[i] += bucket.try_acquire() == 0.0

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)          # force GIL switches: a missing lock would over-grant
    try:
        workers = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        sys.setswitchinterval(old)
    assert sum(granted) == 2000


def test_client_limiter_keeps_clients_apart_and_bounded():
    clock = FakeClock()
    limiter = ClientLimiter(rate_per_s=1.0, burst=1, max_clients=2, clock=clock)
    assert limiter.try_acquire("a") == 0.0 and limiter.try_acquire("b") == 0.0
    assert limiter.try_acquire("a") > 0                    # a is empty, b is not affected
    limiter.try_acquire("c")                               # evicts the least recently seen client (b)
    assert set(limiter._buckets) == {"a", "c"}


def test_global_limit_rejects_with_429_and_release_frees_a_slot():
    flow = FlowController(FlowConfig(max_in_flight=2))
    assert flow.admit().admitted and flow.admit().admitted
    rejected = flow.admit()
    assert (rejected.status, rejected.code) == (429, "overloaded") and "max_in_flight=2" in rejected.error
    assert rejected.retry_after_header() == "1"
    flow.release()
    assert flow.admit().admitted and flow.in_flight == 2


def test_release_without_admit_is_an_error():
    with pytest.raises(RuntimeError, match="release"):
        FlowController().release()


def test_per_client_rate_limit_answers_429_with_retry_after():
    clock = FakeClock()
    flow = FlowController(FlowConfig(client_rate_per_s=0.5, client_burst=1), clock=clock)
    assert flow.admit("alice").admitted
    no = flow.admit("alice")
    assert (no.status, no.code) == (429, "rate_limited") and no.retry_after_s == pytest.approx(2.0)
    assert no.retry_after_header() == "2"
    assert flow.admit("bob").admitted


def test_deadline_shedding_uses_littles_law():
    clock = FakeClock()
    flow = FlowController(FlowConfig(window_s=1.0), clock=clock)
    for _ in range(10):                        # 10 completions in the last second: 10 requests/s
        flow.admit()
        flow.release()
    for _ in range(4):
        assert flow.admit(deadline_ms=None).admitted
    # 4 in flight at 10/s: a new request expects (4 + 1) / 10 s = 500 ms
    shed = flow.admit(deadline_ms=200)
    assert (shed.status, shed.code) == (503, "deadline") and shed.retry_after_s == pytest.approx(0.5)
    assert flow.admit(deadline_ms=1000).admitted


def test_no_evidence_means_admit():
    meter = ThroughputMeter(clock=FakeClock())
    assert meter.expected_ms(in_flight=50) == 0.0
    assert FlowController().admit(deadline_ms=0.001).admitted


def test_bad_flow_config_is_named():
    with pytest.raises(ValueError, match="max_in_flight"):
        FlowConfig(max_in_flight=0)
    with pytest.raises(ValueError, match="client_rate_per_s"):
        FlowConfig(client_rate_per_s=0)
    assert Decision().admitted
