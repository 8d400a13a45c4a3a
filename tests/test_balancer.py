"""Balancer: policies, health checks, retry-before-send only, explicit errors, flow control at the door.

The replicas here are stand-ins: tiny aiohttp apps on free loopback ports (one slow, one that dies, one that
drops a request after reading it), so these tests do not need the model server.
"""
import asyncio
import socket
import threading
import time

import aiohttp
import pytest
from aiohttp import web

from labkit.serve.balancer import Balancer, BalancerConfig, Picker, Replica, _deadline_ms, serve_in_thread
from labkit.serve.flow import FlowConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandIns:
    """Stand-in replicas on one background event loop: start(name, delay_s, drop) / stop(name)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners, self.ports, self.hits = {}, {}, {}

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def start(self, name: str, delay_s: float = 0.0, drop: bool = False, port: int | None = None,
              status: int = 200) -> str:
        async def predict(request):
            await request.read()
            self.hits[name] = self.hits.get(name, 0) + 1
            if drop:                      # read the request, then vanish without answering
                request.transport.abort()
                await asyncio.sleep(0.05)
            await asyncio.sleep(delay_s)
            if status != 200:
                return web.json_response({"error": "refused", "code": "queue_full"}, status=status)
            return web.json_response({"labels": [0], "replica": name})

        async def health(request):
            return web.json_response({"status": "ok"})

        app = web.Application()
        app.router.add_post("/predict", predict)
        app.router.add_get("/health", health)
        runner = web.AppRunner(app, access_log=None)
        self._call(runner.setup())
        port = port or self.ports.get(name) or _free_port()
        self._call(web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start())
        self.runners[name], self.ports[name] = runner, port
        return f"http://127.0.0.1:{port}"

    def stop(self, name: str) -> None:
        self._call(self.runners.pop(name).cleanup())

    def close(self):
        for name in list(self.runners):
            self.stop(name)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def standins():
    s = StandIns()
    yield s
    s.close()


async def _post(session, url, body=b'{"inputs": ["x"]}', headers=None):
    async with session.post(f"{url}/predict", data=body, headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers


def send(url, n, concurrency=1, headers=None):
    """n requests from `concurrency` concurrent users; returns [(status, json, headers)]."""
    async def main():
        results = []
        async with aiohttp.ClientSession() as session:
            async def user(count):
                for _ in range(count):
                    results.append(await _post(session, url, headers=headers))
            await asyncio.gather(*(user(n // concurrency) for _ in range(concurrency)))
        return results
    return asyncio.run(main())


def wait_until(predicate, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


# ---- policies (no network) ----
def _replicas(*outstanding):
    return [Replica(f"http://r{i}", i, outstanding=o) for i, o in enumerate(outstanding)]


def test_round_robin_cycles_over_healthy_replicas():
    reps = _replicas(0, 0, 0)
    reps[1].healthy = False
    picker = Picker("round_robin")
    assert [picker.pick(reps).index for _ in range(4)] == [0, 2, 0, 2]


def test_least_outstanding_picks_the_least_busy_and_rotates_ties():
    picker = Picker("least_outstanding")
    assert picker.pick(_replicas(3, 1, 2)).index == 1
    assert {picker.pick(_replicas(0, 0)).index for _ in range(4)} == {0, 1}


def test_power_of_two_is_seeded_and_prefers_the_less_busy_of_two():
    reps = _replicas(5, 0, 5, 5)
    picks = [[p.pick(reps).index for _ in range(20)] for p in (Picker("power_of_two", 3), Picker("power_of_two", 3))]
    assert picks[0] == picks[1] and picks[0].count(1) > 5   # replica 1 wins whenever it is sampled
    assert Picker("power_of_two").pick(_replicas(9, 0)).index == 1   # two replicas: both sampled


def test_picker_skips_tried_and_returns_none_when_nothing_left():
    reps = _replicas(0, 0)
    assert Picker("least_outstanding").pick(reps, exclude={0}).index == 1
    assert Picker("round_robin").pick(reps, exclude={0, 1}) is None


def test_bad_policy_and_settings_are_named():
    with pytest.raises(ValueError, match="policy"):
        BalancerConfig(policy="random")
    with pytest.raises(ValueError, match="health_interval_s"):
        BalancerConfig(health_interval_s=0)


def test_deadline_comes_from_header_or_body():
    assert _deadline_ms({"X-Deadline-Ms": "25"}, b"{}") == 25.0
    assert _deadline_ms({}, b'{"inputs": ["a"], "deadline_ms": 40}') == 40.0
    assert _deadline_ms({}, b'{"inputs": ["a"]}') is None
    assert _deadline_ms({}, b'not json "deadline_ms"') is None


# ---- end to end with stand-in replicas ----
def test_round_robin_splits_evenly_and_passes_answers_through(standins):
    urls = [standins.start("a"), standins.start("b")]
    with serve_in_thread(urls, BalancerConfig(policy="round_robin")) as lb:
        results = send(lb.url, 10)
    assert all(status == 200 for status, _, _ in results)
    assert sorted(body["replica"] for _, body, _ in results) == ["a"] * 5 + ["b"] * 5
    assert all(h["X-Request-Id"] and h["X-Replica"] in ("0", "1") for _, _, h in results)


def test_least_outstanding_sends_less_to_a_slow_replica_than_round_robin(standins):
    urls = [standins.start("fast", delay_s=0.002), standins.start("slow", delay_s=0.08)]
    share = {}
    for policy in ("round_robin", "least_outstanding", "power_of_two"):
        with serve_in_thread(urls, BalancerConfig(policy=policy)) as lb:
            results = send(lb.url, 40, concurrency=4)
        share[policy] = sum(body["replica"] == "slow" for _, body, _ in results)
    assert share["round_robin"] == 20
    assert share["least_outstanding"] < 20 and share["power_of_two"] < 20, share


def test_dead_replica_connect_failure_is_retried_elsewhere_and_taken_out(standins):
    live = standins.start("live")
    dead = f"http://127.0.0.1:{_free_port()}"          # nothing listens there: connect is refused
    # unhealthy_after=100: the active checks stay out of the way, so the failed connect is what takes it out
    config = BalancerConfig(policy="round_robin", health_interval_s=30, unhealthy_after=100)
    with serve_in_thread([dead, live], config) as lb:
        results = send(lb.url, 6)
        stats = lb.balancer.stats()
    assert [s for s, _, _ in results] == [200] * 6
    assert stats["retries"] >= 1 and stats["replicas"][0]["healthy"] is False


def test_failure_after_send_is_an_explicit_502_and_not_resent(standins):
    urls = [standins.start("dropper", drop=True), standins.start("good")]
    config = BalancerConfig(policy="round_robin", health_interval_s=30)
    with serve_in_thread(urls, config) as lb:
        status, body, headers = send(lb.url, 1)[0]
    assert status == 502 and body["code"] == "replica_failed" and "not retried" in body["error"]
    assert headers["X-Request-Id"]
    assert standins.hits == {"dropper": 1}                # the other replica never saw it


def test_health_checks_remove_a_stopped_replica_and_readd_it(standins):
    urls = [standins.start("a"), standins.start("b")]
    with serve_in_thread(urls, BalancerConfig(policy="round_robin", health_interval_s=0.05)) as lb:
        replicas = lb.balancer.replicas
        standins.stop("b")
        wait_until(lambda: not replicas[1].healthy)
        assert {body["replica"] for _, body, _ in send(lb.url, 6)} == {"a"}
        standins.start("b")                               # same port
        wait_until(lambda: replicas[1].healthy)
        assert {body["replica"] for _, body, _ in send(lb.url, 6)} == {"a", "b"}


def test_no_healthy_replica_is_503_and_balancer_health_says_so(standins):
    dead = f"http://127.0.0.1:{_free_port()}"
    with serve_in_thread([dead], BalancerConfig(health_interval_s=0.05)) as lb:
        wait_until(lambda: not lb.balancer.replicas[0].healthy)
        status, body, headers = send(lb.url, 1)[0]
        health = asyncio.run(_get(f"{lb.url}/health"))
    assert (status, body["code"]) == (503, "no_replica") and int(headers["Retry-After"]) >= 1
    assert health[0] == 503


def test_upstream_timeout_is_504(standins):
    url = standins.start("stuck", delay_s=1.0)
    with serve_in_thread([url], BalancerConfig(upstream_timeout_s=0.1, health_interval_s=30)) as lb:
        status, body, _ = send(lb.url, 1)[0]
    assert (status, body["code"]) == (504, "upstream_timeout")


def test_global_admission_limit_answers_429_at_once(standins):
    url = standins.start("slow", delay_s=0.3)
    config = BalancerConfig(flow=FlowConfig(max_in_flight=2), health_interval_s=30)
    with serve_in_thread([url], config) as lb:
        results = send(lb.url, 6, concurrency=6)
        stats = lb.balancer.stats()
    statuses = sorted(s for s, _, _ in results)
    assert statuses == [200, 200, 429, 429, 429, 429]
    rejected = [(b, h) for s, b, h in results if s == 429]
    assert all(b["code"] == "overloaded" and int(h["Retry-After"]) >= 1 for b, h in rejected)
    assert stats["codes"] == {"overloaded": 4} and stats["in_flight"] == 0


def test_adaptive_throttling_keeps_refused_work_off_the_replicas(standins):
    url = standins.start("refuser", status=429)  # a replica that refuses everything
    config = BalancerConfig(throttle_k=2.0, health_interval_s=30)
    with serve_in_thread([url], config) as lb:
        results = send(lb.url, 200)
    codes = [b.get("code") for s, b, _ in results]
    assert {s for s, _, _ in results} <= {429, 503}
    assert codes.count("throttled") > 150  # most of the refused work never reached the replica
    assert standins.hits["refuser"] == codes.count("queue_full") == 200 - codes.count("throttled")


def test_per_client_rate_limit_is_per_client(standins):
    url = standins.start("a")
    config = BalancerConfig(flow=FlowConfig(client_rate_per_s=0.1, client_burst=2), health_interval_s=30)
    with serve_in_thread([url], config) as lb:
        greedy = send(lb.url, 3, headers={"X-Client-Id": "greedy"})
        polite = send(lb.url, 1, headers={"X-Client-Id": "polite"})
    assert [s for s, _, _ in greedy] == [200, 200, 429] and greedy[2][1]["code"] == "rate_limited"
    assert int(greedy[2][2]["Retry-After"]) == 10                      # one token at 0.1/s
    assert polite[0][0] == 200


async def _get(url):
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


def test_metrics_and_stats_endpoints(standins):
    url = standins.start("a")
    with serve_in_thread([url], BalancerConfig(health_interval_s=0.05)) as lb:
        send(lb.url, 3)
        wait_until(lambda: "labkit_balancer_replica_healthy" in asyncio.run(_get(f"{lb.url}/metrics"))[1])
        status, text = asyncio.run(_get(f"{lb.url}/metrics"))
        stats_status, stats_text = asyncio.run(_get(f"{lb.url}/stats"))
    assert status == 200 and 'labkit_balancer_responses_total{replica="0",status="200"} 3.0' in text
    assert "labkit_balancer_latency_seconds_bucket" in text
    assert stats_status == 200 and '"served": 3' in stats_text


def test_empty_backends_is_an_error():
    with pytest.raises(ValueError, match="backends"):
        Balancer([])
