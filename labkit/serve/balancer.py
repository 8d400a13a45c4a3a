"""An asyncio HTTP load balancer in front of model-server replicas (aiohttp server + one aiohttp client session).

Policies: round_robin, least_outstanding, power_of_two (two random replicas, the less busy wins). Active health
checks (GET /health) take a dead replica out and put it back when it answers; a failed connect also takes it
out at once. Failure rules, so no accepted request is ever lost silently:
  * the connection to a replica could not be opened -> the request was never sent: retry on another replica;
  * the replica failed after the request was sent -> 502 {"code": "replica_failed"} (never resent: a replay of a
    non-idempotent request could run twice);
  * no healthy replica -> 503 {"code": "no_replica"}; upstream timeout -> 504 {"code": "upstream_timeout"}.
Flow control (labkit.serve.flow) answers at the door with 429/503 + Retry-After.
Run standalone: `python -m labkit.serve.balancer --port 8000 http://127.0.0.1:8001 http://127.0.0.1:8002`.
Taught in 10_load_balancing_and_flow_control.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import aiohttp
import prometheus_client as prom
from aiohttp import web

from labkit.serve.flow import Decision, FlowConfig, FlowController
from labkit.serve.process import exit_with_parent
from labkit.serve.throttle import AdaptiveThrottle

POLICIES = ("round_robin", "least_outstanding", "power_of_two")
PASS_HEADERS = ("Content-Type", "Retry-After", "X-Request-Id")   # copied from a replica's answer


@dataclass
class Replica:
    url: str                 # base URL, e.g. "http://127.0.0.1:8001"
    index: int
    healthy: bool = True     # optimistic at start; the first health check or failed connect corrects it
    outstanding: int = 0     # requests sent to it and not yet answered
    served: int = 0          # answers received (any status)
    failed_checks: int = 0   # consecutive failed health checks


class Picker:
    """Chooses a replica among the healthy ones not yet tried for this request."""

    def __init__(self, policy: str, seed: int = 0):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}; got {policy!r}")
        self.policy, self._rng, self._next = policy, random.Random(seed), 0

    def pick(self, replicas: Sequence[Replica], exclude: set[int] = frozenset()) -> Replica | None:
        live = [r for r in replicas if r.healthy and r.index not in exclude]
        if not live:
            return None
        if self.policy == "power_of_two":
            a, b = self._rng.sample(live, 2) if len(live) > 1 else (live[0], live[0])
            return b if b.outstanding < a.outstanding else a
        start, self._next = self._next, self._next + 1   # rotation: RR order, and LOR's tie-break
        rotated = [live[(start + i) % len(live)] for i in range(len(live))]
        if self.policy == "round_robin":
            return rotated[0]
        return min(rotated, key=lambda r: r.outstanding)


@dataclass(frozen=True)
class BalancerConfig:
    policy: str = "least_outstanding"
    seed: int = 0                       # power_of_two's sampling
    health_interval_s: float = 0.25     # how often every replica's GET /health is polled
    health_timeout_s: float = 1.0
    unhealthy_after: int = 1            # consecutive failed checks before a replica is taken out
    upstream_timeout_s: float = 30.0    # a replica's answer slower than this -> 504
    connect_retries: int = 2            # other replicas tried when a connect fails (request not sent)
    throttle_k: float | None = None     # client-side adaptive throttling toward the replicas (labkit.serve.throttle)
    flow: FlowConfig = field(default_factory=FlowConfig)

    def __post_init__(self):
        Picker(self.policy)  # validates the policy name
        for name in ("health_interval_s", "health_timeout_s", "upstream_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}")
        if self.unhealthy_after < 1 or self.connect_retries < 0:
            raise ValueError(f"unhealthy_after must be >= 1 and connect_retries >= 0; got "
                             f"{self.unhealthy_after}, {self.connect_retries}")


def _error(status: int, code: str, message: str, request_id: str, retry_after: str | None = None) -> web.Response:
    headers = {"X-Request-Id": request_id, **({"Retry-After": retry_after} if retry_after else {})}
    return web.json_response({"error": message, "code": code}, status=status, headers=headers)


class _Metrics:
    """The balancer's own Prometheus metrics, in a registry of its own (several balancers may share a process)."""

    def __init__(self):
        self.registry = prom.CollectorRegistry()
        self.responses = prom.Counter("labkit_balancer_responses_total", "Answers sent, by replica and status",
                                      ["replica", "status"], registry=self.registry)
        self.rejected = prom.Counter("labkit_balancer_rejected_total", "Requests answered by the balancer itself",
                                     ["code"], registry=self.registry)
        self.retries = prom.Counter("labkit_balancer_retries_total", "Requests re-routed after a failed connect",
                                    registry=self.registry)
        self.outstanding = prom.Gauge("labkit_balancer_outstanding", "Requests in flight per replica",
                                      ["replica"], registry=self.registry)
        self.healthy = prom.Gauge("labkit_balancer_replica_healthy", "1 when the replica is in rotation",
                                  ["replica"], registry=self.registry)
        self.latency = prom.Histogram("labkit_balancer_latency_seconds", "Time from arrival to answer",
                                      registry=self.registry, buckets=(.001, .0025, .005, .01, .025, .05, .1,
                                                                       .25, .5, 1, 2.5, 5, 10))


class Balancer:
    """Routes POST /predict to replicas; serves its own GET /health, /metrics and /stats."""

    def __init__(self, backends: Sequence[str], config: BalancerConfig = BalancerConfig()):
        if not backends:
            raise ValueError("backends is empty: give at least one replica URL")
        self.config = config
        self.replicas = [Replica(url.rstrip("/"), i) for i, url in enumerate(backends)]
        self.picker = Picker(config.policy, config.seed)
        self.flow = FlowController(config.flow)
        self.throttle = AdaptiveThrottle(config.throttle_k, seed=config.seed) if config.throttle_k else None
        self.metrics = _Metrics()
        self.codes: dict[str, int] = {}   # balancer-made answers by code (rejections and errors)
        self.retries = 0
        self._session: aiohttp.ClientSession | None = None
        self._health_task: asyncio.Task | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 2**20)
        app.router.add_post("/predict", self._predict)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/stats", self._stats)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    def stats(self) -> dict:
        """Per-replica counts and the balancer's own answers, for notebooks and tests."""
        return {"policy": self.config.policy, "retries": self.retries, "codes": dict(self.codes),
                "in_flight": self.flow.in_flight,
                "replicas": [{"url": r.url, "healthy": r.healthy, "outstanding": r.outstanding,
                              "served": r.served} for r in self.replicas]}

    # ---- lifecycle ----
    async def _start(self, app: web.Application) -> None:
        # limit=0: no connection cap, so the client pool never becomes a hidden queue in front of the replicas
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                              auto_decompress=False)
        self._health_task = asyncio.create_task(self._health_loop())

    async def _stop(self, app: web.Application) -> None:
        self._health_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._health_task
        await self._session.close()

    # ---- health ----
    async def _health_loop(self) -> None:
        while True:
            await asyncio.gather(*(self._check(r) for r in self.replicas))
            await asyncio.sleep(self.config.health_interval_s)

    async def _check(self, replica: Replica) -> None:
        try:
            timeout = aiohttp.ClientTimeout(total=self.config.health_timeout_s)
            async with self._session.get(f"{replica.url}/health", timeout=timeout) as resp:
                ok = resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        replica.failed_checks = 0 if ok else replica.failed_checks + 1
        if ok or replica.failed_checks >= self.config.unhealthy_after:
            self._set_healthy(replica, ok)

    def _set_healthy(self, replica: Replica, healthy: bool) -> None:
        replica.healthy = healthy
        self.metrics.healthy.labels(str(replica.index)).set(int(healthy))

    # ---- handlers ----
    async def _health(self, request: web.Request) -> web.Response:
        healthy = sum(r.healthy for r in self.replicas)
        body = {"status": "ok" if healthy else "no_replica", "healthy": healthy, "replicas": len(self.replicas)}
        return web.json_response(body, status=200 if healthy else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=prom.generate_latest(self.metrics.registry),
                            headers={"Content-Type": prom.CONTENT_TYPE_LATEST})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _predict(self, request: web.Request) -> web.Response:
        start = time.perf_counter()
        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        body = await request.read()
        client = request.headers.get("X-Client-Id") or request.remote or ""
        decision = self.flow.admit(client, _deadline_ms(request.headers, body))
        if not decision.admitted:
            response = self._reject(decision, request_id)
        else:
            try:
                response = await self._forward(body, request_id)
            finally:
                self.flow.release(completed=True)
        self.metrics.latency.observe(time.perf_counter() - start)
        return response

    def _reject(self, decision: Decision, request_id: str) -> web.Response:
        return self._own(decision.status, decision.code, decision.error, request_id,
                         decision.retry_after_header())

    def _own(self, status: int, code: str, message: str, request_id: str, retry_after: str | None = None):
        """An answer the balancer makes itself (never silent: counted, coded, explained)."""
        self.codes[code] = self.codes.get(code, 0) + 1
        self.metrics.rejected.labels(code).inc()
        return _error(status, code, message, request_id, retry_after)

    async def _forward(self, body: bytes, request_id: str) -> web.Response:
        if self.throttle is not None and not self.throttle.allow():
            return self._own(503, "throttled", "the replicas refuse most requests now; refused here without "
                             f"sending (adaptive throttling, k={self.config.throttle_k:g})", request_id, "1")
        tried: set[int] = set()
        for _ in range(1 + self.config.connect_retries):
            replica = self.picker.pick(self.replicas, tried)
            if replica is None:
                break
            tried.add(replica.index)
            try:
                return await self._send(replica, body, request_id)
            except aiohttp.ClientConnectorError:   # refused / unreachable: nothing was sent, so retrying is safe
                self._set_healthy(replica, False)
                self.retries += 1
                self.metrics.retries.inc()
            except (aiohttp.ConnectionTimeoutError, aiohttp.SocketTimeoutError, TimeoutError):
                return self._own(504, "upstream_timeout", f"replica {replica.index} did not answer within "
                                 f"{self.config.upstream_timeout_s:g} s", request_id)
            except aiohttp.ClientError as err:     # sent, then the replica failed: it may have run; do not resend
                self._set_healthy(replica, False)
                return self._own(502, "replica_failed", f"replica {replica.index} failed after the request "
                                 f"was sent ({type(err).__name__}); not retried", request_id)
        return self._own(503, "no_replica", f"no healthy replica (tried {len(tried)})", request_id,
                         str(max(1, round(self.config.health_interval_s))))

    async def _send(self, replica: Replica, body: bytes, request_id: str) -> web.Response:
        headers = {"Content-Type": "application/json", "X-Request-Id": request_id}
        timeout = aiohttp.ClientTimeout(total=self.config.upstream_timeout_s)
        label = str(replica.index)
        replica.outstanding += 1
        self.metrics.outstanding.labels(label).inc()
        try:
            async with self._session.post(f"{replica.url}/predict", data=body, headers=headers,
                                          timeout=timeout) as resp:
                payload = await resp.read()
                passed = {k: resp.headers[k] for k in PASS_HEADERS if k in resp.headers}
                replica.served += 1
                if self.throttle is not None:
                    self.throttle.record(accepted=resp.status not in (429, 503))
                self.metrics.responses.labels(label, str(resp.status)).inc()
                return web.Response(body=payload, status=resp.status,
                                    headers={"X-Request-Id": request_id, **passed, "X-Replica": label})
        finally:
            replica.outstanding -= 1
            self.metrics.outstanding.labels(label).dec()


def _deadline_ms(headers: Mapping[str, str], body: bytes) -> float | None:
    """The request's deadline: header X-Deadline-Ms, else the body's "deadline_ms" (parsed only if present)."""
    raw = headers.get("X-Deadline-Ms")
    if raw is None and b'"deadline_ms"' in body:
        with contextlib.suppress(ValueError, AttributeError):
            raw = json.loads(body).get("deadline_ms")
    try:
        return float(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None  # a malformed deadline is the replica's to reject with a 400 naming it


@dataclass
class RunningBalancer:
    url: str                 # "http://127.0.0.1:<port>"
    balancer: Balancer


@contextlib.contextmanager
def serve_in_thread(backends: Sequence[str], config: BalancerConfig = BalancerConfig(),
                    host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningBalancer]:
    """Run a balancer on its own event loop in a background thread (tests, notebooks); stops on exit."""
    balancer = Balancer(backends, config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="labkit-balancer", daemon=True)
    thread.start()

    def call(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    runner = web.AppRunner(balancer.app(), access_log=None)
    try:
        call(runner.setup())
        call(web.SockSite(runner, sock).start())
        yield RunningBalancer(f"http://{host}:{sock.getsockname()[1]}", balancer)
    finally:
        with contextlib.suppress(Exception):
            call(runner.cleanup())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        sock.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("backends", nargs="+", help="replica base URLs, e.g. http://127.0.0.1:8001")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--policy", choices=POLICIES, default="least_outstanding")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--health-interval-s", type=float, default=0.25)
    parser.add_argument("--upstream-timeout-s", type=float, default=30.0)
    parser.add_argument("--max-in-flight", type=int, default=None, help="global admission limit (429 beyond)")
    parser.add_argument("--client-rate", type=float, default=None, help="per-client requests/s (429 beyond)")
    parser.add_argument("--client-burst", type=float, default=10.0)
    parser.add_argument("--no-shed", action="store_true", help="do not shed requests by their deadline_ms")
    parser.add_argument("--throttle", type=float, metavar="K", default=None,
                        help="client-side adaptive throttling toward the replicas (SRE book; K=2 is usual)")


def config_from_args(args: argparse.Namespace) -> BalancerConfig:
    flow = FlowConfig(max_in_flight=args.max_in_flight, client_rate_per_s=args.client_rate,
                      client_burst=args.client_burst, shed_by_deadline=not args.no_shed)
    return BalancerConfig(policy=args.policy, seed=args.seed, health_interval_s=args.health_interval_s,
                          upstream_timeout_s=args.upstream_timeout_s, flow=flow,
                          throttle_k=getattr(args, "throttle", None))


def config_to_args(config: BalancerConfig) -> list[str]:
    """The flags that reproduce `config` (the inverse of config_from_args)."""
    flow = config.flow
    args = ["--policy", config.policy, "--seed", str(config.seed), "--health-interval-s",
            str(config.health_interval_s), "--upstream-timeout-s", str(config.upstream_timeout_s),
            "--client-burst", str(flow.client_burst)]
    if flow.max_in_flight is not None:
        args += ["--max-in-flight", str(flow.max_in_flight)]
    if flow.client_rate_per_s is not None:
        args += ["--client-rate", str(flow.client_rate_per_s)]
    if config.throttle_k is not None:
        args += ["--throttle", str(config.throttle_k)]
    return args + ([] if flow.shed_by_deadline else ["--no-shed"])


def run_balancer(backends: Sequence[str], config: BalancerConfig = BalancerConfig(), host: str = "127.0.0.1",
                 port: int = 8000) -> int:
    """Serve in the foreground until SIGINT/SIGTERM."""
    balancer = Balancer(backends, config)
    try:
        import uvloop
        loop = uvloop.new_event_loop()   # the balancer is pure I/O: a faster event loop is its main lever
    except ImportError:
        loop = asyncio.new_event_loop()
    exit_with_parent()   # started by a BalancerProcess: die with its parent
    print(f"balancer ({config.policy}) on http://{host}:{port} -> {', '.join(backends)}", flush=True)
    web.run_app(balancer.app(), host=host, port=port, access_log=None, print=None, loop=loop,
                shutdown_timeout=5.0)
    return 0


def run(args: argparse.Namespace) -> int:
    return run_balancer(args.backends, config_from_args(args), args.host, args.port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.serve.balancer", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
