"""The model server as a Starlette ASGI app: POST /predict, GET /health, GET /metrics.

The hot path is kept lean on purpose: no per-request logging, no middleware, no pydantic, json.loads
and json.dumps directly. Per request: admission (queue limit), body limit, parse, validate +
preprocess, optional deadline check, cache, dynamic batcher, worker. Taught in 09_async_serving.
"""
from __future__ import annotations

import asyncio
import gc
import importlib
import itertools
import json
import logging
import os
import time
from contextlib import asynccontextmanager
from typing import Callable

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from labkit.serve.adaptive import GradientConfig, GradientLimit
from labkit.serve.batcher import DeadlineExceeded, DynamicBatcher
from labkit.serve.cache import LRUCache, input_key
from labkit.serve.config import ServeConfig
from labkit.serve.engines import fixed_probs
from labkit.serve.lifecycle import load_model, num_classes
from labkit.serve.preprocessing import make_preprocessor
from labkit.serve.protocol import HTTPError, answer, parse_body, preprocess_inputs
from labkit.serve.telemetry import OUTCOMES, Metrics
from labkit.serve.wire import (client_gone, error_body, header_refusal, outcome_of, read_body, request_headers,
                               send_answer, send_error)
from labkit.serve.workers import make_worker

log = logging.getLogger("labkit.serve")
access_log = logging.getLogger("labkit.serve.access")  # --json-logs: one line per /predict (labkit.monitor.logs)


def adaptive_floor(config: ServeConfig) -> int:
    """The adaptive limit's lowest value: a batch running on every worker and the next one filling. Below it,
    admission itself idles the workers, and more clients that ignore Retry-After are refused each second (each
    refusal costs the event loop)."""
    return min(config.queue_limit, 2 * config.max_batch * config.num_workers)


class Service:
    """Everything /predict needs: model, worker, batcher, cache, admission state and metrics."""

    def __init__(self, config: ServeConfig, loader: Callable | None = None):
        self.config, self.metrics = config, Metrics()
        self.loader = loader or (lambda: load_model(config.model, config.checkpoint))
        self.status = "loading"           # -> "ok" when ready, "draining" on shutdown, "failed"
        self.in_flight = 0                # admitted-but-unanswered requests (the queue limit bounds it)
        self.cache = LRUCache(config.cache_size) if config.cache else None
        self.preprocess = self.batcher = self.worker = self.loaded = None
        self.classes = num_classes(config.model)
        self.froze_gc = False
        self._ids, self._id_prefix = itertools.count(), f"{os.getpid():x}-"
        self.limiter = GradientLimit(GradientConfig(initial_limit=config.queue_limit, min_limit=adaptive_floor(config),
                                                    max_limit=config.queue_limit)) if config.adaptive_limit else None
        self.gate = None                  # the transport's Gate when served by `labkit serve` (labkit.serve.transport)
        self.slow_reads: set = set()      # timeouts of bodies still arriving (a drain ends them at once)

    def admission_limit(self) -> int:
        """How many requests may be in flight now: the queue limit, or the adaptive limit below it."""
        return self.limiter.limit if self.limiter is not None else self.config.queue_limit

    def can_admit(self) -> bool:
        active = self.gate.active if self.gate is not None else self.in_flight
        return active < self.admission_limit()

    def next_id(self) -> str:
        return self._id_prefix + str(next(self._ids))

    async def start(self) -> None:
        """Load (or train) the model off the event loop, start the worker and the batcher, then go ready."""
        c = self.config
        if c.no_model:
            self.preprocess = await asyncio.to_thread(make_preprocessor, c.model)
            log.info("model %s: --no-model, fixed answers (the HTTP bound)", c.model)
        else:
            self.loaded = await asyncio.to_thread(self.loader)
            self.preprocess = self.loaded.preprocess
            log.info("model %s: held-out accuracy %.3f, weights %s, ready in %.1f s", c.model,
                     self.loaded.accuracy, self.loaded.weights, self.loaded.load_s)
            self.worker = await asyncio.to_thread(make_worker, c.workers, self.loaded, c.threads, c.slow_ms,
                                                  c.num_workers, c.engine)  # an ONNX export takes seconds
            await self.worker.start(self.preprocess([self._example()]))
            max_batch, max_wait_ms = (c.max_batch, c.max_wait_ms) if c.batching else (1, 0.0)
            self.batcher = DynamicBatcher(self.worker.run, max_batch, max_wait_ms, c.num_workers,
                                          on_batch=self.metrics.observe_batch)
            self.batcher.start()
        if c.gc_freeze and not gc.get_freeze_count():  # in a notebook or test process: freeze once
            self.froze_gc = True
            # A full collection walks every tracked object: with torch and the model loaded that is ~190k of
            # them and ~100 ms here, during which no request moves. Freezing moves what start-up made to a
            # permanent generation the collector no longer walks. Measured in 09_async_serving (§1b).
            gc.collect()
            gc.freeze()
        gc.callbacks.append(self.metrics.on_gc)
        self.status = "ok"
        log.info("serving: %s", " ".join(c.to_args()) or "defaults")

    def _example(self) -> object:
        return "the food was good" if self.config.model == "text" else np.zeros((3, 32, 32)).tolist()

    def drain(self) -> None:
        """Stop admitting: held requests are read (and answered 503), bodies still arriving are cut short."""
        if self.status == "ok":
            self.status = "draining"
        if self.gate is not None:
            self.gate.close()
        now = asyncio.get_running_loop().time()
        for timeout in list(self.slow_reads):
            timeout.reschedule(now)

    async def stop(self) -> None:
        """Answer what is queued, then release the workers."""
        self.status = "draining"
        if self.metrics.on_gc in gc.callbacks:
            gc.callbacks.remove(self.metrics.on_gc)
        if self.froze_gc:  # matters only when the app shares its process (tests, notebooks)
            gc.unfreeze()
            self.froze_gc = False
        if self.batcher is not None:
            await self.batcher.stop()
        if self.worker is not None:
            await asyncio.to_thread(self.worker.close)

    # ------------------------------------------------------------------ one request
    async def infer(self, inputs: list, deadline_ms: float | None) -> tuple[np.ndarray, int, list[bool]]:
        """(probs (k, K), rows of the forward that served the request, cached per input)."""
        x = preprocess_inputs(self.preprocess, inputs)  # (k, ...) validated, before anything is queued
        k = len(x)
        if self.config.no_model:
            return fixed_probs(k, self.classes), k, [False] * k
        if self.cache is None:
            probs, rows = await self._forward(x, deadline_ms)
            return probs, rows, [False] * k
        return await self._cached(x, deadline_ms)

    async def _cached(self, x, deadline_ms: float | None) -> tuple[np.ndarray, int, list[bool]]:
        keys = [input_key(row) for row in x]
        found = [self.cache.get(key) for key in keys]
        missing = [i for i, row in enumerate(found) if row is None]
        self.metrics.cache_hits.inc(len(x) - len(missing))
        rows, missing_set = 0, set(missing)
        if missing:
            self.metrics.cache_misses.inc(len(missing))
            probs, rows = await self._forward(x if len(missing) == len(x) else x[missing], deadline_ms)
            for j, i in enumerate(missing):
                found[i] = probs[j]
                self.cache.put(keys[i], probs[j])
        return np.stack(found), rows, [i not in missing_set for i in range(len(x))]

    async def _forward(self, x, deadline_ms: float | None) -> tuple[np.ndarray, int]:
        deadline_s = None
        if deadline_ms is not None:
            wait_s = self.batcher.estimated_wait_s(len(x))  # the rows ahead and this request's own forward
            if wait_s * 1e3 > deadline_ms:
                raise HTTPError(503, "deadline", f"estimated answer time {wait_s * 1e3:.2f} ms exceeds deadline_ms "
                                f"{deadline_ms:g}", retry_after_s=wait_s)
            deadline_s = asyncio.get_running_loop().time() + deadline_ms / 1e3
        try:
            return await self.batcher.submit(x, deadline_s)
        except DeadlineExceeded as err:
            raise HTTPError(503, "deadline", f"deadline_ms {deadline_ms:g} passed while queued",
                            retry_after_s=self.batcher.estimated_wait_s()) from err


class Predict:
    """POST /predict as a bare ASGI endpoint: no Request/Response objects on the hot path."""

    def __init__(self, service: Service):
        self.service = service

    async def __call__(self, scope: dict, receive, send) -> None:
        start, service = time.perf_counter(), self.service
        m, config = service.metrics, service.config
        declared, rid, upgrade = request_headers(scope)
        refusal = header_refusal(rid, upgrade)
        if not rid or (refusal is not None and refusal.code == "bad_request_id"):  # never echo a bad id
            rid = service.next_id().encode()
        if service.status != "ok":
            m.outcome[service.status if service.status in OUTCOMES else "loading"].inc()
            return await send_error(send, HTTPError(503, service.status, f"server is {service.status}", 1), rid)
        if refusal is not None:
            m.outcome["bad_input"].inc()
            return await send_error(send, refusal, rid)
        if service.gate is None and not service.can_admit():  # (served by uvicorn, the transport's Gate decides)
            m.outcome["queue_full"].inc()
            err = HTTPError(429, "queue_full", f"{service.in_flight} requests in flight; admission limit "
                            f"{service.admission_limit()}", retry_after_s=1)
            return await send_error(send, err, rid)
        admitted = False
        try:
            raw = await read_body(receive, declared, config.max_body_bytes, config.body_timeout_s, service)
            if service.gate is not None and service.gate.active > config.queue_limit:
                # the headers passed the gate before earlier bodies were complete (a client that writes the body
                # separately): counted now, this one is over the hard limit. Not the adaptive limit: it moves
                # with every latency window, and refusing already-read requests here is the costly path.
                raise HTTPError(429, "queue_full", f"{service.gate.active} requests with complete bodies; "
                                f"queue limit {config.queue_limit}", retry_after_s=1)
            service.in_flight += 1  # counted once the body is complete: a stalled body holds no slot
            m.in_flight.inc()
            admitted, admitted_s = True, time.perf_counter()
            inputs, deadline_ms = parse_body(raw, config.max_items)
            probs, rows, cached = await service.infer(inputs, deadline_ms)
            reply = answer(rid.decode(), probs, rows, cached)
            if deadline_ms is not None:  # the deadline counts from admission; a late answer says it is late
                reply["deadline_met"] = (time.perf_counter() - admitted_s) * 1e3 <= deadline_ms
                if not reply["deadline_met"]:
                    m.late.inc()
            status, body, extra = 200, json.dumps(reply).encode(), None
            outcome = "ok"  # counted once, after the answer is built: a failure above is an error only
            if service.limiter is not None:
                service.limiter.observe(time.perf_counter() - admitted_s, service.in_flight)
        except HTTPError as err:
            outcome, (status, body, extra) = outcome_of(err), error_body(err)
        except Exception as err:  # a failed forward: this request's batch only; the server keeps serving
            outcome = "error"
            status, body, extra = error_body(HTTPError(500, "forward_failed", f"{type(err).__name__}: {err}"))
        finally:
            if admitted:
                service.in_flight -= 1
                m.in_flight.dec()
            m.latency.observe(time.perf_counter() - start)
        if outcome != "disconnected" and client_gone(receive):
            outcome = "disconnected"  # e.g. bytes after the body: uvicorn answered 400 itself and closed
        m.outcome[outcome].inc()
        if config.json_logs:
            access_log.info("request", extra={"request_id": rid.decode(), "outcome": outcome, "status": status,
                                              "latency_ms": round((time.perf_counter() - start) * 1e3, 3)})
        await send_answer(send, status, body, rid, extra)


class ServeApp(Starlette):
    """Starlette, with POST /predict dispatched straight to its bare ASGI handler: the router and the exception
    middleware cost ~30-60 us per request here, a third of the handler's own time (measured in-process)."""

    def __init__(self, predict: Predict, **kwargs):
        super().__init__(**kwargs)
        self.predict = predict

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == "/predict" and scope["method"] == "POST":
            return await self.predict(scope, receive, send)
        await super().__call__(scope, receive, send)


def extension_routes(spec: str, service: Service) -> list[Route]:
    """The routes of each "module:function" in a comma-separated spec; the function takes the Service."""
    routes: list[Route] = []
    for name in filter(None, (part.strip() for part in spec.split(","))):
        module, _, function = name.partition(":")
        if not module or not function:
            raise ValueError(f"extension {name!r} must look like 'package.module:function'")
        routes += getattr(importlib.import_module(module), function)(service)
    return routes


def _json(status: int, payload: dict, request_id: str) -> Response:
    return Response(json.dumps(payload), status, {"X-Request-Id": request_id}, media_type="application/json")


def create_app(config: ServeConfig, loader: Callable | None = None,
               on_fatal: Callable[[BaseException], None] | None = None) -> ServeApp:
    """The ASGI app; `app.state.service` holds the Service. Loading runs in the background (/health is 503
    meanwhile); if it fails, on_fatal(err) is called (the CLI stops the server)."""
    service = Service(config, loader)
    loading: list[asyncio.Task] = []

    async def load() -> None:
        try:
            await service.start()
        except Exception as err:
            service.status = "failed"
            log.exception("model server failed to start")
            if on_fatal is not None:
                on_fatal(err)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        loading.append(asyncio.create_task(load()))
        yield
        await service.stop()

    async def health(request: Request) -> Response:
        rid = request.headers.get("x-request-id") or service.next_id()
        status = "saturated" if service.status == "ok" and not service.can_admit() else service.status
        body = {"status": status, "model": config.model, "pid": os.getpid(), "in_flight": service.in_flight,
                "admission_limit": service.admission_limit(),
                **({"gate": {**service.gate.counts, "active": service.gate.active}} if service.gate else {})}
        return _json(200 if status == "ok" else 503, body, rid)

    async def metrics(request: Request) -> Response:
        rid = request.headers.get("x-request-id") or service.next_id()
        return Response(generate_latest(service.metrics.registry), 200, {"X-Request-Id": rid},
                        media_type=CONTENT_TYPE_LATEST)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        code = "not_found" if status == 404 else "method_not_allowed"
        return _json(status, {"error": f"{request.method} {request.url.path}: {getattr(exc, 'detail', code)}",
                              "code": code}, request.headers.get("x-request-id") or service.next_id())

    predict = Predict(service)
    routes = [Route("/predict", predict, methods=["POST"]), Route("/health", health), Route("/metrics", metrics)]
    app = ServeApp(predict, routes=routes + extension_routes(config.extensions, service),
                   exception_handlers={404: not_found, 405: not_found}, lifespan=lifespan)
    app.state.service = service
    app.state.loading = loading
    return app
