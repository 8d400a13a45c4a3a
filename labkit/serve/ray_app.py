"""The same model on Ray Serve: @serve.batch, replicas, max_ongoing_requests / max_queued_requests.

Request parsing, validation and the answer are labkit's own (`labkit.serve.protocol`, the model's
preprocessor) and the model comes from `labkit.serve.lifecycle`, so the HTTP API is the one `labkit serve`
speaks and the same load generator drives both. Locally, RayServe starts a one-node Ray in-process on loopback:

    with RayServe(ServeConfig(max_batch=64, max_wait_ms=2.0), num_replicas=1) as ray_server:
        run_open_loop(ray_server.predict_url, bodies, rate=200, duration_s=5)

On a cluster the deployment code is unchanged: `ray start --head` on one machine, `ray start
--address=HEAD:6379` on the others, then `ray.init(address="auto")` (RayServe(address="auto")) and Serve places
the replicas across the nodes (KubeRay's RayService does the same on Kubernetes).
Taught in 10_load_balancing_and_flow_control.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request

from labkit.serve.config import ServeConfig
from labkit.serve.process import free_port

APP_NAME = "labkit"


class RayStartError(RuntimeError):
    """Ray itself (GCS, raylet, agents) did not come up: a property of the machine, not of the app."""


def _rows(items: list) -> int:
    """serve.batch's batch size in rows (inputs), not requests: one request may carry several inputs."""
    return sum(len(x) for x in items)


def build_app(config: ServeConfig = ServeConfig(), num_replicas: int = 1, max_ongoing_requests: int | None = None,
              max_queued_requests: int | None = None, max_replicas_per_node: int | None = None):
    """A bound Ray Serve application for `config` (model, threads, max_batch, max_wait_ms, max_items);
    max_replicas_per_node=1 spreads the replicas over the nodes (labkit.deploy.raycluster)."""
    import numpy as np
    import torch
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    from labkit.serve.engines import predict_probs
    from labkit.serve.lifecycle import load_model
    from labkit.serve.protocol import HTTPError, answer, error_answer, parse_body, preprocess_inputs

    # defaults mirror labkit's server: a replica holds up to queue_limit requests, 2 batches of them running
    ongoing = max_ongoing_requests or min(config.queue_limit, 2 * config.max_batch)
    queued = max_queued_requests if max_queued_requests is not None else max(0, config.queue_limit - ongoing)

    @serve.deployment(name="Classifier", num_replicas=num_replicas, max_ongoing_requests=ongoing,
                      max_queued_requests=queued, ray_actor_options={"num_cpus": config.threads},
                      max_replicas_per_node=max_replicas_per_node)
    class Classifier:
        def __init__(self, config: ServeConfig):
            torch.set_num_threads(config.threads)
            self.loaded = load_model(config.model, config.checkpoint, evaluate=False)
            self.max_items = config.max_items
            self.predict_rows.set_max_batch_size(config.max_batch if config.batching else 1)
            self.predict_rows.set_batch_wait_timeout_s(config.max_wait_ms / 1e3 if config.batching else 0.0)
            self._ids = iter(range(1 << 62))

        @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002, batch_size_fn=_rows)
        async def predict_rows(self, xs: list[np.ndarray]) -> list[tuple[np.ndarray, int]]:
            x = np.concatenate(xs)                     # (sum of k_i, ...)
            # off the replica's event loop, like labkit's thread worker: requests keep queueing meanwhile
            probs = await asyncio.to_thread(predict_probs, self.loaded.model, x)
            splits = np.cumsum([len(t) for t in xs])[:-1]
            return [(p, len(x)) for p in np.split(probs, splits)]

        async def __call__(self, request: Request):
            rid = request.headers.get("x-request-id") or f"ray-{next(self._ids)}"
            try:
                inputs, _ = parse_body(await request.body(), self.max_items)
                x = preprocess_inputs(self.loaded.preprocess, inputs)    # (k, ...)
            except HTTPError as err:                  # 400 naming the problem, as labkit serve answers
                return JSONResponse(error_answer(err), err.status, {"X-Request-Id": rid})
            probs, rows = await self.predict_rows(x)
            return JSONResponse(answer(rid, probs, rows, [False] * len(x)), 200, {"X-Request-Id": rid})

    return Classifier.bind(config)


def wait_answering(predict_url: str, model: str, timeout_s: float) -> None:
    """serve.run returns once replicas are up; wait until the HTTP proxy answers a real request too."""
    body = json.dumps({"inputs": ["the food was good" if model == "text" else [[[0.0] * 32] * 32] * 3]}).encode()
    deadline, last = time.monotonic() + timeout_s, "no answer"
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(predict_url, body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10):
                return
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code}: {err.read()[:300]!r}"
        except OSError as err:
            last = f"{type(err).__name__}: {err}"
        time.sleep(0.2)
    raise RuntimeError(f"Ray Serve at {predict_url} not answering after {timeout_s:.0f} s; last: {last}")


def run_on_serve(app, port: int, model: str, timeout_s: float, **start_options) -> None:
    """Start Serve's HTTP proxy on 127.0.0.1:port, run `app` at /predict, and wait until it answers."""
    from ray import serve

    serve.start(http_options={"host": "127.0.0.1", "port": port}, **start_options)
    serve.run(app, name=APP_NAME, route_prefix="/predict")
    wait_answering(f"http://127.0.0.1:{port}/predict", model, timeout_s)


def shutdown() -> None:
    """Serve, then this driver's Ray connection (a local Ray it started stops with it)."""
    import ray
    from ray import serve

    if ray.is_initialized():
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


class RayServe:
    """Ray (one local node, loopback) + Serve + the Classifier app; stops all of it on exit."""

    def __init__(self, config: ServeConfig = ServeConfig(), num_replicas: int = 1, *, num_cpus: int = 2,
                 max_ongoing_requests: int | None = None, max_queued_requests: int | None = None,
                 port: int | None = None, address: str = "local", startup_timeout_s: float = 180.0,
                 worker_niceness: int = 0):
        if num_replicas * config.threads > num_cpus:
            raise ValueError(f"num_replicas={num_replicas} x threads={config.threads} needs more than "
                             f"num_cpus={num_cpus}: the replicas could not all be placed")
        self.config, self.num_replicas, self.num_cpus = config, num_replicas, num_cpus
        self.limits = (max_ongoing_requests, max_queued_requests)
        self.port, self.address, self.startup_timeout_s = port or free_port(), address, startup_timeout_s
        # Ray starts its workers at nice 15 by default; on a shared machine that starves the replica next to
        # normal-priority processes, so by default it runs at the priority labkit's own servers have
        self.worker_niceness = worker_niceness
        self.startup_s = float("nan")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def predict_url(self) -> str:
        return f"{self.url}/predict"

    def start(self) -> RayServe:
        import ray

        start = time.perf_counter()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")   # nothing leaves the machine
        os.environ["RAY_worker_niceness"] = str(self.worker_niceness)  # RayConfig, read by the raylet
        try:
            ray.init(address=self.address, num_cpus=self.num_cpus, num_gpus=0, include_dashboard=False,
                     log_to_driver=False, _node_ip_address="127.0.0.1")
        except Exception as err:
            self.stop()
            raise RayStartError(f"ray.init failed ({type(err).__name__}: {err}); on a busy machine the raylet "
                                f"can time out waiting for its agents: retry when it is quieter") from err
        try:
            run_on_serve(build_app(self.config, self.num_replicas, *self.limits), self.port, self.config.model,
                         self.startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - start
        return self

    def stop(self) -> None:
        shutdown()

    def __enter__(self) -> RayServe:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
