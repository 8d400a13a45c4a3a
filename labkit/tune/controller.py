"""A feedback controller inside the model server: reads its own p99 and queue, adjusts max wait / max batch.

    labkit serve --engine onnx --extensions labkit.tune.controller:routes      (GET /tuning: state + history)

Every `interval_s` it reads the server's own latency histogram (the one /metrics exports) over the last
`window_s`, estimates p99 the way Prometheus's histogram_quantile does, and applies an AIMD rule in the
spirit of Clipper's adaptive batching: a p99 over the target halves max wait (waiting is pure latency
when latency is the problem) and, when a backlog is queued, adds rows to max batch (bigger forwards drain
it; batches leaving full count as a backlog too); without a backlog, a slow forward halves max batch (Clipper's multiplicative decrease). With headroom,
max batch grows while batches leave full and max wait grows while requests queue, up to caps.
The rule is a pure function (`aimd_step`), tested apart from the thread that runs it.
Taught in 11_dynamic_tuning.
"""
from __future__ import annotations

import collections
import json
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, replace

RULE_ENV = "LABKIT_TUNE_RULE"  # JSON of AimdRule fields, read when the server creates its app


@dataclass(frozen=True)
class AimdRule:
    """When and how far the controller moves the batcher's two knobs."""
    target_ms: float = 12.0        # server-side p99 to hold; below the client's SLO (HTTP and client add more)
    headroom: float = 0.6          # p99 below headroom * target: increase (additively)
    decrease: float = 0.5          # multiplicative decrease factor
    batch_step: int = 8            # additive increase of max batch (rows)
    wait_step_ms: float = 0.25     # additive increase of max wait
    min_batch: int = 4
    max_batch_cap: int = 128
    wait_cap_ms: float = 2.0       # never wait longer than this for a fuller batch
    forward_share: float = 1.0     # a mean forward over this share of the target is itself too slow
    full_share: float = 0.8        # batches this full on average count as a backlog (the cap binds)
    interval_s: float = 0.1        # seconds between decisions
    window_s: float = 0.5          # seconds of latency history each decision reads

    def __post_init__(self) -> None:
        if not (self.target_ms > 0 and 0 < self.headroom < 1 and 0 < self.decrease < 1 and self.interval_s > 0
                and self.window_s >= self.interval_s and 1 <= self.min_batch <= self.max_batch_cap):
            raise ValueError(f"inconsistent AimdRule: {self}")


@dataclass(frozen=True)
class Knobs:
    """The batcher settings the controller owns."""
    max_batch: int
    max_wait_ms: float


@dataclass(frozen=True)
class Observation:
    """What one decision reads: the window's p99 and request count, the queue now, the mean forward."""
    p99_ms: float
    requests: int
    queue: int          # admitted-but-unanswered requests (Service.in_flight)
    forward_ms: float   # mean seconds per forward in the window, in ms (NaN if none ran)
    batch_rows: float = float("nan")  # mean rows per forward in the window (NaN if none ran)


def aimd_step(knobs: Knobs, obs: Observation, rule: AimdRule) -> tuple[Knobs, str]:
    """One decision: the new knobs and the reason ("hold", "decrease", "drain", "increase", ...)."""
    batch, wait = knobs.max_batch, knobs.max_wait_ms
    # backlog: more queued than one batch holds, or batches leaving (nearly) full: the cap binds. The second
    # sign still shows when admission upstream (a transport gate, an adaptive limit) keeps the queue short.
    backlog = obs.queue >= batch or obs.batch_rows >= rule.full_share * batch
    if obs.requests == 0 or math.isnan(obs.p99_ms):
        return knobs, "idle"
    if obs.p99_ms > rule.target_ms:
        wait = wait * rule.decrease if wait * rule.decrease >= 0.05 else 0.0
        if backlog:  # queued work behind full batches: more rows per forward drain it
            batch, why = min(rule.max_batch_cap, batch + rule.batch_step), "decrease wait, drain"
        elif obs.forward_ms > rule.forward_share * rule.target_ms:  # no backlog: the forward itself is slow
            batch, why = max(rule.min_batch, int(batch * rule.decrease)), "decrease: slow forward"
        else:
            why = "decrease wait"
    elif obs.p99_ms < rule.headroom * rule.target_ms:
        if backlog:
            batch = min(rule.max_batch_cap, batch + rule.batch_step)
        if obs.queue >= 2:
            wait = min(rule.wait_cap_ms, wait + rule.wait_step_ms)
        why = "increase" if (batch, wait) != (knobs.max_batch, knobs.max_wait_ms) else "hold"
    else:
        why = "hold"
    return Knobs(batch, round(wait, 4)), why


def histogram_quantile(bounds_s: list[float], cumulative: list[float], q: float) -> float:
    """q-quantile (seconds) from cumulative bucket counts, interpolating linearly inside the bucket (as
    Prometheus's histogram_quantile); NaN without observations; the last finite bound if it is in +Inf."""
    total = cumulative[-1] if cumulative else 0.0
    if total <= 0:
        return float("nan")
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(bounds_s, cumulative):
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            inside = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / inside if inside else 1.0)
        lower_bound, lower_count = bound, count
    return lower_bound


def read_histogram(histogram) -> tuple[list[float], list[float], float, float]:
    """(upper bounds s, cumulative counts, sum, count) of an unlabelled prometheus_client Histogram."""
    bounds, counts, total_sum, total_count = [], [], 0.0, 0.0
    for family in histogram.collect():
        for s in family.samples:
            if s.name.endswith("_bucket"):
                bounds.append(float(s.labels["le"]))
                counts.append(s.value)
            elif s.name.endswith("_sum"):
                total_sum = s.value
            elif s.name.endswith("_count"):
                total_count = s.value
    return bounds, counts, total_sum, total_count


class Controller:
    """Runs aimd_step on a Service every rule.interval_s and keeps the history GET /tuning returns."""

    def __init__(self, service, rule: AimdRule = AimdRule(), clock=time.time):
        self.service, self.rule, self.clock = service, rule, clock
        self.history: collections.deque = collections.deque(maxlen=20_000)
        self._snapshots: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def knobs(self) -> Knobs:
        b = self.service.batcher
        return Knobs(b.max_batch, b.max_wait_s * 1e3)

    def observe(self) -> Observation:
        """The window's observation: deltas between the newest snapshot and the one window_s ago."""
        m, now = self.service.metrics, self.clock()
        lat, fwd, rows = read_histogram(m.latency), read_histogram(m.forward), read_histogram(m.batch_size)
        self._snapshots.append((now, lat[1], fwd[2], fwd[3], rows[2]))
        while len(self._snapshots) > 1 and self._snapshots[1][0] <= now - self.rule.window_s:
            self._snapshots.popleft()
        _, old_counts, old_sum, old_n, old_rows = self._snapshots[0]
        window = [c - o for c, o in zip(lat[1], old_counts)]
        forwards = fwd[3] - old_n
        forward_ms = (fwd[2] - old_sum) / forwards * 1e3 if forwards else float("nan")
        batch_rows = (rows[2] - old_rows) / forwards if forwards else float("nan")
        p99_ms = histogram_quantile(lat[0], window, 0.99) * 1e3
        return Observation(p99_ms, int(window[-1]) if window else 0, int(self.service.in_flight), forward_ms,
                           batch_rows)

    def tick(self) -> dict:
        """Observe, decide, apply to the batcher, record; returns the recorded row."""
        before, obs = self.knobs(), self.observe()
        after, why = aimd_step(before, obs, self.rule)
        batcher = self.service.batcher
        batcher.max_batch, batcher.max_wait_s = after.max_batch, after.max_wait_ms / 1e3
        row = {"t_s": self.clock(), **asdict(obs), **asdict(after), "action": why}
        self.history.append(row)
        return row

    def run(self) -> None:
        """Wait for the server to be ready, then tick until it drains or stop() is called."""
        while not self._stop.is_set() and self.service.batcher is None:
            if self.service.status == "failed":
                return
            self._stop.wait(self.rule.interval_s)
        while not self._stop.wait(self.rule.interval_s):
            if self.service.status != "ok":
                if self.service.status in ("draining", "failed"):
                    return
                continue
            self.tick()

    def start(self) -> Controller:
        self._thread = threading.Thread(target=self.run, name="labkit-tune-controller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def state(self, since_s: float = 0.0) -> dict:
        """Rule, current knobs and the history rows after since_s (JSON-ready, NaN -> None)."""
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                for r in self.history if r["t_s"] > since_s]
        knobs = asdict(self.knobs()) if self.service.batcher is not None else None
        return {"rule": asdict(self.rule), "knobs": knobs, "history": rows}


def rule_from_env(environ: dict | None = None) -> AimdRule:
    """AimdRule from the JSON in LABKIT_TUNE_RULE (absent: the defaults)."""
    text = (environ if environ is not None else os.environ).get(RULE_ENV, "")
    return replace(AimdRule(), **json.loads(text)) if text else AimdRule()


def routes(service) -> list:
    """The server extension: start a Controller on the service and serve GET /tuning[?since_s=...]."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    if service.config.no_model or not service.config.batching:
        raise ValueError("the tuning controller needs a model and dynamic batching")
    controller = Controller(service, rule_from_env()).start()
    service.tuning = controller  # reachable from the app (app.state.service.tuning) in tests

    async def tuning(request: Request) -> JSONResponse:
        return JSONResponse(controller.state(float(request.query_params.get("since_s", 0.0))))
    return [Route("/tuning", tuning)]
