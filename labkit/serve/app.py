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
import math
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

from labkit.serve.batcher import DeadlineExceeded, DynamicBatcher
from labkit.serve.cache import LRUCache, input_key
from labkit.serve.config import ServeConfig
from labkit.serve.engines import fixed_probs
from labkit.serve.lifecycle import load_model, num_classes
from labkit.serve.preprocessing import make_preprocessor
from labkit.serve.protocol import HTTPError, answer, error_answer, parse_body, preprocess_inputs
from labkit.serve.telemetry import OUTCOMES, Metrics
from labkit.serve.workers import make_worker

log = logging.getLogger("labkit.serve")


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
            wait_s = self.batcher.estimated_wait_s()
            if wait_s * 1e3 > deadline_ms:
                raise HTTPError(503, "deadline", f"estimated wait {wait_s * 1e3:.0f} ms exceeds deadline_ms "
                                f"{deadline_ms:g}", retry_after_s=wait_s)
            deadline_s = asyncio.get_running_loop().time() + deadline_ms / 1e3
        try:
            return await self.batcher.submit(x, deadline_s)
        except DeadlineExceeded as err:
            raise HTTPError(503, "deadline", f"deadline_ms {deadline_ms:g} passed while queued",
                            retry_after_s=self.batcher.estimated_wait_s()) from err


# ---------------------------------------------------------------------- HTTP layer
JSON_HEADERS = [(b"content-type", b"application/json")]


def _headers(scope: dict) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(Content-Length, X-Request-Id, Upgrade) from the raw ASGI headers, in one pass."""
    length = rid = upgrade = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = value
        elif name == b"x-request-id":
            rid = value
        elif name == b"upgrade":
            upgrade = value
    return length, rid, upgrade


def _refusal(rid: bytes | None, upgrade: bytes | None) -> HTTPError | None:
    """A 400 for a request refused on its headers alone, before admission and before its body is read."""
    if upgrade is not None:
        # `curl --http2` on http:// asks to switch to HTTP/2 (Upgrade: h2c). uvicorn's httptools parser then
        # stops at the headers and the body never reaches the app: it read as empty, a 400 malformed_json that
        # blamed a valid body. This server speaks HTTP/1.1 only, so it says so; the connection is closed after
        # the answer (the parser no longer reads that stream).
        name = upgrade.decode("latin-1")
        return HTTPError(400, "unsupported_upgrade", f"Upgrade: {name} is not supported; this server speaks "
                         "HTTP/1.1 only (curl: use --http1.1, not --http2, on http://)")
    if rid is not None:
        try:
            rid.decode()
        except UnicodeDecodeError as err:
            # Refused rather than replaced: a client that sends an id wants to find its answer by it, and a
            # silently generated one would break that without telling anyone. The answer carries a fresh id.
            return HTTPError(400, "bad_request_id", f"header X-Request-Id must be UTF-8 text; byte "
                             f"{rid[err.start:err.start + 1]!r} at position {err.start} is not")
    return None


def _outcome(err: HTTPError) -> str:
    """The outcome an error answer is counted under."""
    if err.code == "disconnected":
        return "disconnected"
    return {400: "bad_input", 413: "too_large"}.get(err.status, err.code if err.code in OUTCOMES else "error")


def _client_gone(receive) -> bool:
    """Whether the client has gone (http.disconnect) without waiting: receive() is stepped once by hand.

    After the whole body has been read, receive() answers at once only when the connection is gone; otherwise
    it would wait (until the response is sent), and the step is abandoned (close()). No task and no loop
    iteration, unlike racing a receive() task. A dropped answer is then counted as 'disconnected', not 'ok':
    uvicorn silently drops what the app sends on a disconnected connection. An answer that needed no await
    (--no-model, a cache hit) can be checked before uvicorn has run connection_lost, and still counts 'ok'."""
    waiting = receive()
    try:
        waiting.send(None)
    except StopIteration as done:
        return isinstance(done.value, dict) and done.value.get("type") == "http.disconnect"
    except Exception:  # noqa: BLE001 - a receive() that cannot be stepped: assume the client is there
        return False
    waiting.close()
    return False


def _error_body(err: HTTPError) -> tuple[int, bytes, list]:
    headers = []
    if err.retry_after_s is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(err.retry_after_s))).encode()))  # whole seconds
    if err.status == 413 or err.code == "unsupported_upgrade":
        headers.append((b"connection", b"close"))  # the rest of the body, or of the stream, is not read
    return err.status, json.dumps(error_answer(err)).encode(), headers


async def _send(send, status: int, body: bytes, rid: bytes, extra: list | None = None) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), (b"x-request-id", rid)]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send, err: HTTPError, rid: bytes) -> None:
    status, body, extra = _error_body(err)
    await _send(send, status, body, rid, extra)


async def _read_body(receive, declared: bytes | None, limit: int) -> bytes:
    """The body, or HTTPError 413 when Content-Length or the bytes actually sent exceed the limit."""
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPError(413, "too_large", f"Content-Length {declared.decode(errors='replace')} exceeds the "
                        f"{limit}-byte limit")
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPError(400, "disconnected", "client disconnected before sending the whole body")
        chunk, more = message.get("body", b""), message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, "too_large", f"body exceeds the {limit}-byte limit")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Predict:
    """POST /predict as a bare ASGI endpoint: no Request/Response objects on the hot path."""

    def __init__(self, service: Service):
        self.service = service

    async def __call__(self, scope: dict, receive, send) -> None:
        start, service = time.perf_counter(), self.service
        m, config = service.metrics, service.config
        declared, rid, upgrade = _headers(scope)
        refusal = _refusal(rid, upgrade)
        if not rid or (refusal is not None and refusal.code == "bad_request_id"):  # never echo a bad id
            rid = service.next_id().encode()
        if service.status != "ok":
            m.outcome[service.status if service.status in OUTCOMES else "loading"].inc()
            return await _send_error(send, HTTPError(503, service.status, f"server is {service.status}", 1), rid)
        if refusal is not None:
            m.outcome["bad_input"].inc()
            return await _send_error(send, refusal, rid)
        if service.in_flight >= config.queue_limit:  # answered at once, before reading or parsing anything
            m.outcome["queue_full"].inc()
            err = HTTPError(429, "queue_full", f"{service.in_flight} requests in flight; queue limit "
                            f"{config.queue_limit}", retry_after_s=1)
            return await _send_error(send, err, rid)
        service.in_flight += 1
        m.in_flight.inc()
        try:
            raw = await _read_body(receive, declared, config.max_body_bytes)
            probs, rows, cached = await service.infer(*parse_body(raw, config.max_items))
            status, body, extra = 200, json.dumps(answer(rid.decode(), probs, rows, cached)).encode(), None
            outcome = "ok"  # counted once, after the answer is built: a failure above is an error only
        except HTTPError as err:
            outcome, (status, body, extra) = _outcome(err), _error_body(err)
        except Exception as err:  # a failed forward: this request's batch only; the server keeps serving
            outcome = "error"
            status, body, extra = _error_body(HTTPError(500, "forward_failed", f"{type(err).__name__}: {err}"))
        finally:
            service.in_flight -= 1
            m.in_flight.dec()
            m.latency.observe(time.perf_counter() - start)
        if outcome != "disconnected" and _client_gone(receive):
            outcome = "disconnected"  # e.g. bytes after the body: uvicorn answered 400 itself and closed
        m.outcome[outcome].inc()
        await _send(send, status, body, rid, extra)


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
        body = {"status": service.status, "model": config.model, "pid": os.getpid()}
        return _json(200 if service.status == "ok" else 503, body, rid)

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
