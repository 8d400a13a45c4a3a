"""A version-aware router in front of model-server replicas: every answer names its model version.

One `labkit serve` replica per model version (each started with its own --checkpoint). The router
  * sends each request to the active version, or with probability canary_fraction to the canary;
  * mirrors it to a shadow version, whose answer is scored and then thrown away (the client never waits);
  * adds "model_version" to the JSON answer and an X-Model-Version header, and counts answers, labelled
    items and correct items per version and role in its own Prometheus registry (GET /metrics);
  * scores requests that carry "labels" (labkit.online.feedback: stripped before the replica sees them),
    so a CanaryPolicy can roll a bad canary back on its own;
  * swaps versions by draining: new requests go to the new version at once, in-flight ones finish on the old.
Run it in a thread with serve_router(...). Taught in 14_online_learning.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Mapping

import aiohttp
import prometheus_client as prom
from aiohttp import web

from labkit.online.feedback import count_correct, split_labels
from labkit.online.policies import CanaryPolicy, ShadowReport, Tally, shadow_report

now = time.perf_counter


@dataclass
class Version:
    """A model version served by one replica."""
    name: str
    url: str
    in_flight: int = 0


@dataclass(frozen=True)
class RouterConfig:
    upstream_timeout_s: float = 10.0   # a replica slower than this -> 504
    seed: int = 0                      # canary split draws
    answer_log: int = 100_000          # (time, version) of the most recent answers kept for plots and checks
    policy: CanaryPolicy = field(default_factory=CanaryPolicy)


class _Metrics:
    """Per-version Prometheus metrics in the router's own registry."""

    def __init__(self):
        self.registry = prom.CollectorRegistry()
        self.answers = prom.Counter("labkit_router_answers_total", "Answers by model version, role and status",
                                    ["version", "role", "status"], registry=self.registry)
        self.items = prom.Counter("labkit_router_labelled_items_total", "Labelled inputs answered",
                                  ["version", "role"], registry=self.registry)
        self.correct = prom.Counter("labkit_router_correct_items_total", "Labelled inputs answered correctly",
                                    ["version", "role"], registry=self.registry)
        self.in_flight = prom.Gauge("labkit_router_in_flight", "Requests sent to a version and not yet answered",
                                    ["version"], registry=self.registry)
        self.active = prom.Gauge("labkit_router_active_version", "1 for the version answering by default",
                                 ["version"], registry=self.registry)
        self.events = prom.Counter("labkit_router_events_total", "Swaps, canary starts, promotions, rollbacks",
                                   ["kind"], registry=self.registry)


class VersionRouter:
    """Routes POST /predict among model versions (active / canary / shadow); GET /health, /metrics, /stats."""

    def __init__(self, versions: Mapping[str, str], active: str, config: RouterConfig = RouterConfig()):
        if active not in versions:
            raise ValueError(f"active version {active!r} is not one of {sorted(versions)}")
        self.versions = {name: Version(name, url.rstrip("/")) for name, url in versions.items()}
        self.config, self.active = config, active
        self.canary: str | None = None
        self.canary_fraction = 0.0
        self.shadow: str | None = None
        self.metrics, self._rng = _Metrics(), random.Random(config.seed)
        self.events: list[dict] = []               # {"t_s", "kind", ...}: swaps, canaries, rollbacks
        self.answered: collections.deque[tuple[float, str]] = collections.deque(maxlen=config.answer_log)
        self._canary_tallies: dict[str, Tally] = {}
        self._shadow_tallies = {"primary": Tally(), "shadow": Tally(), "agree": 0}
        self._mirrors: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None
        self._t0 = now()
        self.metrics.active.labels(active).set(1)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 2**20)
        app.router.add_post("/predict", self._predict)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/stats", self._stats)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    # ---------------------------------------------------------------- control (call on the router's loop)
    def _event(self, kind: str, **details) -> None:
        self.events.append({"t_s": now() - self._t0, "kind": kind, **details})
        self.metrics.events.labels(kind).inc()

    def set_shadow(self, name: str | None) -> None:
        """Mirror every request to `name` (None: stop mirroring) and start a fresh shadow comparison."""
        if name is not None:
            self._check(name)
        self.shadow = name
        self._shadow_tallies = {"primary": Tally(), "shadow": Tally(), "agree": 0}
        self._event("shadow", version=name)

    def start_canary(self, name: str, fraction: float) -> None:
        """Send `fraction` of requests to `name`; the policy promotes or rolls it back from live tallies."""
        self._check(name)
        if name == self.active or not 0 < fraction < 1:
            raise ValueError(f"canary must differ from the active version and 0 < fraction < 1; got {name!r}, "
                             f"{fraction}")
        self.canary, self.canary_fraction = name, fraction
        self._canary_tallies = {"stable": Tally(), "canary": Tally()}
        self._event("canary", version=name, fraction=fraction)

    def rollback(self, reason: str = "manual") -> None:
        """Stop the canary: all traffic back to the active version."""
        if self.canary is not None:
            self._event("rollback", version=self.canary, reason=reason, **self._tallies())
            self.canary, self.canary_fraction = None, 0.0

    async def swap(self, name: str) -> float:
        """Make `name` the active version now; wait until the old one has answered its in-flight requests.

        Returns the drain time in ms. Nothing is cancelled or resent, so the swap fails no request."""
        start, old = now(), self._switch(name)
        return await self._drain(old, name, start)

    async def _drain(self, old: Version, new: str, start: float) -> float:
        """Wait until `old` has no request in flight; log the swap with its drain time (ms)."""
        while old.in_flight and old.name != new:
            await asyncio.sleep(0.002)
        drain_ms = (now() - start) * 1e3
        self._event("swap", old=old.name, new=new, drain_ms=drain_ms)
        return drain_ms

    def _switch(self, name: str) -> Version:
        """New requests go to `name` from now on (synchronous: no request can see a half-done swap)."""
        self._check(name)
        old = self.versions[self.active]
        self.metrics.active.labels(old.name).set(0)
        self.active = name
        self.metrics.active.labels(name).set(1)
        if self.canary == name:
            self.canary, self.canary_fraction = None, 0.0
        return old

    def _check(self, name: str) -> None:
        if name not in self.versions:
            raise ValueError(f"unknown version {name!r}; known: {sorted(self.versions)}")

    def _tallies(self) -> dict:
        return {f"{role}_{k}": getattr(t, k) for role, t in self._canary_tallies.items()
                for k in ("answers", "items", "accuracy")}

    async def settle(self) -> None:
        """Wait until every mirrored (shadow) call and background drain still running has finished."""
        while self._mirrors:
            await asyncio.gather(*list(self._mirrors), return_exceptions=True)

    def shadow_report(self) -> ShadowReport:
        """Primary vs shadow on the mirrored requests answered so far."""
        t = self._shadow_tallies
        return shadow_report(t["primary"], t["shadow"], t["agree"])

    def answer_log(self) -> list[tuple[float, str]]:
        """(seconds since the router started, version) of the latest answers sent to clients, oldest first."""
        return list(self.answered)

    def stats(self) -> dict:
        """Current routing state, per-version in-flight counts and the event log."""
        return {"active": self.active, "canary": self.canary, "canary_fraction": self.canary_fraction,
                "shadow": self.shadow, "in_flight": {v.name: v.in_flight for v in self.versions.values()},
                "events": list(self.events), "canary_tallies": self._tallies() if self.canary else {}}

    # ---------------------------------------------------------------- lifecycle
    async def _start(self, app: web.Application) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def _stop(self, app: web.Application) -> None:
        if self._mirrors:
            await asyncio.gather(*self._mirrors, return_exceptions=True)
        await self._session.close()

    # ---------------------------------------------------------------- handlers
    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "active": self.active})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=prom.generate_latest(self.metrics.registry),
                            headers={"Content-Type": prom.CONTENT_TYPE_LATEST})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _predict(self, request: web.Request) -> web.Response:
        body, labels = split_labels(await request.read())
        canary = self.canary is not None and self._rng.random() < self.canary_fraction
        version = self.versions[self.canary if canary else self.active]
        status, payload = await self._send(version, body)
        self.answered.append((now() - self._t0, version.name))
        role = "canary" if canary else "primary"
        correct = self._score(version.name, role, status, payload, labels)
        if self.canary is not None:
            self._judge_canary("canary" if canary else "stable", status, labels, correct)
        if self.shadow is not None and self.shadow != version.name and status == 200:
            self._mirror(body, labels, payload)
        return _stamped(status, payload, version.name)

    async def _send(self, version: Version, body: bytes) -> tuple[int, dict]:
        """Forward to the version's replica: (status, JSON answer); connection failures become 502 answers."""
        version.in_flight += 1
        self.metrics.in_flight.labels(version.name).inc()
        timeout = aiohttp.ClientTimeout(total=self.config.upstream_timeout_s)
        try:
            async with self._session.post(f"{version.url}/predict", data=body, timeout=timeout,
                                          headers={"Content-Type": "application/json"}) as resp:
                status, raw = resp.status, await resp.read()
            try:
                return status, json.loads(raw)
            except ValueError:
                return 502, {"error": "replica answered with invalid JSON", "code": "bad_upstream"}
        except TimeoutError:
            return 504, {"error": f"version {version.name} timed out", "code": "upstream_timeout"}
        except aiohttp.ClientError as err:
            return 502, {"error": f"version {version.name} failed: {type(err).__name__}", "code": "replica_failed"}
        finally:
            version.in_flight -= 1
            self.metrics.in_flight.labels(version.name).dec()

    def _score(self, name: str, role: str, status: int, payload: dict, labels: list | None) -> int:
        """Count the answer; for labelled requests count items and correct items. Returns the correct count."""
        self.metrics.answers.labels(name, role, str(status)).inc()
        if labels is None or status != 200:
            return 0
        correct = count_correct(payload.get("labels"), labels)
        self.metrics.items.labels(name, role).inc(len(labels))
        self.metrics.correct.labels(name, role).inc(correct)
        return correct

    def _judge_canary(self, role: str, status: int, labels: list | None, correct: int) -> None:
        ok, n = status < 500, len(labels) if labels is not None and status == 200 else 0
        self._canary_tallies[role].add(ok, n, correct)
        verdict = self.config.policy.decide(self._canary_tallies["stable"], self._canary_tallies["canary"])
        if verdict == "rollback":
            self.rollback(reason="canary worse than stable")
        elif verdict == "promote":
            name = self.canary
            self._event("promote", version=name, **self._tallies())
            old = self._switch(name)   # now, so no later request is judged against a finished canary
            self._background(self._drain(old, name, now()))

    def _background(self, coro) -> None:
        """Run coro as a task the router keeps a reference to (and awaits on shutdown)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    def _mirror(self, body: bytes, labels: list | None, primary: dict) -> None:
        self._background(self._shadow_call(self.shadow, body, labels, primary))

    async def _shadow_call(self, name: str, body: bytes, labels: list | None, primary: dict) -> None:
        status, payload = await self._send(self.versions[name], body)
        correct = self._score(name, "shadow", status, payload, labels)
        if status != 200 or labels is None or name != self.shadow:
            return
        t = self._shadow_tallies
        t["shadow"].add(True, len(labels), correct)
        t["primary"].add(True, len(labels), count_correct(primary.get("labels"), labels))
        t["agree"] += count_correct(payload.get("labels"), primary.get("labels") or [])


def scrape_answers(url: str) -> dict[tuple[str, str], float]:
    """{(version, role): answers} summed over statuses, read from the router's GET /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "labkit_router_answers_total":
                key = (sample.labels["version"], sample.labels["role"])
                out[key] = out.get(key, 0.0) + sample.value
    return out


def _stamped(status: int, payload: dict, version: str) -> web.Response:
    return web.json_response({**payload, "model_version": version}, status=status,
                             headers={"X-Model-Version": version})


@dataclass
class RunningRouter:
    """A router serving on a background event loop: its URL, the router, and call() to run control coroutines."""
    url: str
    router: VersionRouter
    loop: asyncio.AbstractEventLoop

    def call(self, fn, *args, timeout_s: float = 30.0):
        """Run fn(*args) on the router's loop (a coroutine function is awaited there) and return its result."""
        async def run():
            out = fn(*args)
            return await out if asyncio.iscoroutine(out) else out
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=timeout_s)


@contextlib.contextmanager
def serve_router(versions: Mapping[str, str], active: str, config: RouterConfig = RouterConfig(),
                 host: str = "127.0.0.1") -> Iterator[RunningRouter]:
    """Run a VersionRouter on its own event loop in a background thread; stops on exit."""
    router = VersionRouter(versions, active, config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="labkit-router", daemon=True)
    thread.start()
    running = RunningRouter(f"http://{host}:{sock.getsockname()[1]}", router, loop)
    runner = web.AppRunner(router.app(), access_log=None)
    try:
        running.call(runner.setup)
        running.call(web.SockSite(runner, sock).start)
        yield running
    finally:
        with contextlib.suppress(Exception):
            running.call(runner.cleanup)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        sock.close()
