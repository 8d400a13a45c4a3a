"""Load generator: open-loop Poisson arrivals and closed-loop users. Taught in 09_async_serving.

Open loop: request i is launched at its *intended* time t_i (seeded exponential gaps), each as its own task,
whether or not earlier ones have answered, and its latency is measured from t_i. A slow server therefore
shows up as latency instead of silently lowering the offered load (no coordinated omission). If the
generator itself falls behind its schedule, the lag is recorded (`lag_p99_ms`), so a client bottleneck is
visible instead of being blamed on the server. Every request ends in exactly one outcome:
ok (2xx) / rejected (429, 503) / error (other status, connection error) / timeout.

The client is labkit's lean FastClient by default (client="fast"); client="aiohttp" runs the same load
over aiohttp, to measure what a heavier client costs when it shares the cores with the server.
Records and summaries live in labkit.serve.records, arrivals and bodies in labkit.serve.workloads, the
search for goodput under an SLO in labkit.serve.slo, the plots in labkit.plots, the `labkit loadtest`
command in labkit.serve.loadtest.
"""
from __future__ import annotations

import asyncio
import gc
import itertools
import json
import math
import sys
import threading
import time
from typing import Callable, Sequence

from labkit.serve.records import REJECT_STATUSES, THROTTLED, LoadResult, Record
from labkit.serve.throttle import AdaptiveThrottle
from labkit.serve.workloads import check_stop, poisson_arrivals

GRACE_S = 1.0  # extra time after the last request's own timeout before the global deadline cancels the rest
HEADERS = {"Content-Type": "application/json"}
now = time.perf_counter  # not loop.time(): uvloop's clock ticks in whole milliseconds


def _check_common(bodies: Sequence[bytes], timeout_s: float) -> list[bytes]:
    if not bodies:
        raise ValueError("bodies is empty: give at least one request body")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0; got {timeout_s}")
    return [b if isinstance(b, bytes) else str(b).encode() for b in bodies]


# ---------------------------------------------------------------- the async core


CLIENTS = ("fast", "aiohttp")


class _AiohttpClient:
    """aiohttp behind FastClient's interface: `await post(body) -> (status, body)`."""

    def __init__(self, url: str, connections: int):
        import aiohttp

        connector = aiohttp.TCPConnector(limit=connections, limit_per_host=0, keepalive_timeout=30)
        self.url = url
        self.session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                             timeout=aiohttp.ClientTimeout(total=None))

    async def __aenter__(self) -> "_AiohttpClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()

    async def post(self, body: bytes) -> tuple[int, bytes]:
        async with self.session.post(self.url, data=body, headers=HEADERS) as resp:
            return resp.status, await resp.read()


def make_client(url: str, connections: int, client: str = "fast"):
    """An async-context client with `await post(body) -> (status, body)`: FastClient or aiohttp."""
    if client == "fast":
        from labkit.serve.httpclient import FastClient

        return FastClient(url, connections)
    if client == "aiohttp":
        return _AiohttpClient(url, connections)
    raise ValueError(f"client must be one of {CLIENTS}; got {client!r}")


async def _request(http, body: bytes, index: int, start: float, intended: float, timeout_s: float,
                   throttle: AdaptiveThrottle | None = None) -> Record:
    """Send one POST; always return a Record, whatever happens (refused locally by `throttle`: rejected, status 0)."""
    sent, status, batch, error = now(), 0, 0, ""
    if throttle is not None and not throttle.allow():
        return Record(index, intended - start, sent - start, (now() - intended) * 1e3, 0, "rejected", 0, THROTTLED)
    try:
        async with asyncio.timeout(timeout_s):
            status, payload = await http.post(body)
        outcome = "ok" if 200 <= status < 300 else "rejected" if status in REJECT_STATUSES else "error"
        if outcome == "ok":
            batch = _batch_size(payload)
    except TimeoutError as err:
        outcome, error = "timeout", type(err).__name__
    except Exception as err:  # connection refused/reset, bad payload: an error, never a lost request
        outcome, error = "error", type(err).__name__
    latency_ms = (now() - intended) * 1e3
    if throttle is not None:
        throttle.record(accepted=outcome != "rejected")
    return Record(index, intended - start, sent - start, latency_ms, status, outcome, batch, error)


def _batch_size(payload: bytes) -> int:
    try:
        return int(json.loads(payload).get("batch_size", 0))
    except (ValueError, AttributeError, TypeError):
        return 0


async def _finish(tasks: list[asyncio.Task], deadline: float) -> None:
    """Wait for tasks until the global deadline, then cancel the rest (their records become timeouts)."""
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - now()))
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _cancelled(index: int, start: float, intended: float, done: float) -> Record:
    return Record(index, intended - start, float("nan"), (done - intended) * 1e3, 0, "timeout", 0, "deadline")


async def open_loop(url: str, bodies: Sequence[bytes], rate: float, *, count: int | None = None,
                    duration_s: float | None = None, timeout_s: float = 5.0, seed: int = 0,
                    connections: int = 256, deadline_s: float | None = None, client: str = "fast",
                    throttle: AdaptiveThrottle | None = None) -> LoadResult:
    """Poisson arrivals at `rate` req/s; request i sends bodies[i % len(bodies)]; with `throttle`, the client
    refuses locally what the server would likely refuse (labkit.serve.throttle). Taught in 09_async_serving."""
    bodies = _check_common(bodies, timeout_s)
    arrivals = poisson_arrivals(rate, count=count, duration_s=duration_s, seed=seed)
    records: list[Record | None] = [None] * len(arrivals)

    async def one(i: int, intended: float) -> None:
        records[i] = await _request(http, bodies[i % len(bodies)], i, start, intended, timeout_s, throttle)

    async with make_client(url, connections, client) as http:
        start = now() + 0.005
        end = start + (deadline_s if deadline_s is not None else
                       (arrivals[-1] if len(arrivals) else 0.0) + timeout_s + GRACE_S)
        tasks = []
        for i, t in enumerate(arrivals):
            if now() >= end:
                break
            delay = start + t - now()
            if delay > 0:
                await asyncio.sleep(delay)
            elif i % 16 == 0:  # behind schedule: launch in bursts, but let started requests progress
                await asyncio.sleep(0)
            tasks.append(asyncio.create_task(one(i, start + float(t))))
        await _finish(tasks, end)
    done = now()
    records = [r or _cancelled(i, start, start + float(arrivals[i]), done) for i, r in enumerate(records)]
    cfg = dict(url=url, rate=rate, count=count, duration_s=duration_s, timeout_s=timeout_s, seed=seed,
               connections=connections, distinct_bodies=len(bodies), client=client,
               throttle_k=throttle.k if throttle is not None else None)
    return LoadResult(records, "open", cfg)


async def closed_loop(url: str, bodies: Sequence[bytes], users: int, *, count: int | None = None,
                      duration_s: float | None = None, timeout_s: float = 5.0,
                      deadline_s: float | None = None, client: str = "fast") -> LoadResult:
    """`users` concurrent users, each sending its next request when the last one answers (no think time)."""
    bodies = _check_common(bodies, timeout_s)
    check_stop(count, duration_s)
    if users < 1:
        raise ValueError(f"users must be >= 1; got {users}")
    counter = itertools.count()
    records: list[Record] = []
    inflight: dict[int, float] = {}

    async def user() -> None:
        while (i := next(counter)) < (count if count is not None else sys.maxsize) and now() < stop:
            inflight[i] = t = now()
            records.append(await _request(http, bodies[i % len(bodies)], i, start, t, timeout_s))
            del inflight[i]

    async with make_client(url, users, client) as http:
        start = now()
        stop = start + duration_s if duration_s is not None else math.inf
        if deadline_s is None:
            per_user = math.ceil(count / users) * timeout_s if count is not None else 0.0
            deadline_s = min(duration_s or math.inf, per_user or math.inf) + timeout_s + GRACE_S
        await _finish([asyncio.create_task(user()) for _ in range(users)], start + deadline_s)
    done = now()
    records += [_cancelled(i, start, t, done) for i, t in inflight.items()]
    records.sort(key=lambda r: r.index)
    cfg = dict(url=url, users=users, count=count, duration_s=duration_s, timeout_s=timeout_s,
               distinct_bodies=len(bodies), client=client)
    return LoadResult(records, "closed", cfg)


# ---------------------------------------------------------------- sync wrappers (usable inside Jupyter)


def _run_in_thread(make_coro: Callable[[], object]):
    """Run a fresh event loop (uvloop when installed) in a worker thread: works under a running loop too."""
    box: dict = {}

    def target() -> None:
        try:
            import uvloop
            factory = uvloop.new_event_loop
        except ImportError:
            factory = None
        try:
            with asyncio.Runner(loop_factory=factory) as runner:
                box["value"] = runner.run(make_coro())
        except BaseException as err:  # re-raised in the caller's thread
            box["error"] = err

    # The run allocates many short-lived objects; a cyclic-GC pass over them can stall the client for
    # 100+ ms and show up as server latency. Measured at 1,200 req/s here: p99 388 ms with the collector on,
    # 170 ms off, and the client's lag behind schedule 162 ms vs 21 ms. Collect once, afterwards, instead.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        worker = threading.Thread(target=target, name="labkit-loadgen", daemon=True)
        worker.start()
        worker.join()
    finally:
        if was_enabled:
            gc.enable()
    if "error" in box:
        raise box["error"]
    return box["value"]


def run_open_loop(url: str, bodies: Sequence[bytes], rate: float, **kwargs) -> LoadResult:
    """Sync twin of open_loop (same keyword arguments). Taught in 09_async_serving."""
    return _run_in_thread(lambda: open_loop(url, bodies, rate, **kwargs))


def run_closed_loop(url: str, bodies: Sequence[bytes], users: int, **kwargs) -> LoadResult:
    """Sync twin of closed_loop (same keyword arguments). Taught in 09_async_serving."""
    return _run_in_thread(lambda: closed_loop(url, bodies, users, **kwargs))


def client_cost(url: str, bodies: Sequence[bytes], client: str = "fast", users: int = 32,
                duration_s: float = 1.0) -> dict:
    """Closed-loop req/s through `client`, and the CPU this process spent per request (us): what the load
    generator itself costs. Run it against a --no-model server. Taught in 09_async_serving."""
    cpu = time.process_time()
    s = run_closed_loop(url, bodies, users, duration_s=duration_s, timeout_s=5.0, client=client).summary()
    cpu = time.process_time() - cpu
    return {"client": client, "sent": s["sent"], "ok": s["ok"], "throughput_rps": s["throughput_rps"],
            "cpu_us_per_request": cpu / max(s["sent"], 1) * 1e6}
