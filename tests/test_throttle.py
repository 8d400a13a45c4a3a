"""Client-side adaptive throttling (labkit.serve.throttle): the SRE book's formula, its window, and its use in the
load generator and the balancer."""
import pytest

from labkit.serve.records import THROTTLED, LoadResult, Record
from labkit.serve.throttle import AdaptiveThrottle


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_nothing_is_throttled_while_the_server_accepts():
    throttle = AdaptiveThrottle(k=2.0, clock=Clock())
    for _ in range(1000):
        assert throttle.allow()
        throttle.record(accepted=True)
    assert throttle.throttled == 0 and throttle.reject_probability() == 0.0


def test_refusals_make_the_client_refuse_about_the_sre_fraction():
    clock = Clock()
    throttle = AdaptiveThrottle(k=2.0, window_s=5.0, clock=clock, seed=1)
    sent = accepted = 0
    for i in range(20_000):  # 2,000 req/s offered for 10 s to a server that accepts 500 req/s
        clock.t = i * 0.0005
        if throttle.allow():
            sent += 1
            ok = accepted < 500 * clock.t
            accepted += ok
            throttle.record(accepted=ok)
    # at equilibrium the client sends about k x what the server accepts: about 2 x accepts, not 4 x
    assert 1.6 < sent / accepted < 2.6, (sent, accepted)
    expected = (throttle.requests - 2 * throttle.accepts) / (throttle.requests + 1)
    assert throttle.reject_probability() == pytest.approx(max(0.0, expected))


def test_the_window_forgets_old_refusals():
    clock = Clock()
    throttle = AdaptiveThrottle(k=2.0, window_s=1.0, bucket_s=0.25, clock=clock)
    for _ in range(100):
        throttle.allow()
        throttle.record(accepted=False)
    assert throttle.reject_probability() > 0.9
    clock.t = 1.5
    assert throttle.allow() and throttle.requests == 1  # the refusals of 1.5 s ago are out of the window


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="k >= 1"):
        AdaptiveThrottle(k=0.5)


def test_throttled_records_are_rejections_kept_out_of_the_server_rejection_latency():
    records = [Record(0, 0.0, 0.0, 5.0, 200, "ok"), Record(1, 0.0, 0.0, 9.0, 429, "rejected"),
               Record(2, 0.0, 0.0, 0.01, 0, "rejected", 0, THROTTLED)]
    s = LoadResult(records, "open", {"rate": 3}).summary()
    assert s["rejected"] == 2 and s["throttled"] == 1 and s["reject_p99_ms"] == pytest.approx(9.0)
