"""POST /explain: occlusion attributions from the model server, kept from starving /predict.

Mounted with `labkit serve --extensions labkit.serve.explaining:routes`. An explanation costs many forwards
(one per word for text, one per patch for images), so it gets its own admission control: at most
`queue_limit` explanations admitted (waiting or computing), at most `max_concurrent` computing, anything
beyond answered 429 with Retry-After at once. Its perturbed rows go through the server's dynamic batcher,
one batched submission per input, where they share forwards with predictions instead of queueing
a forward each. Request and error protocol: labkit.serve.protocol. Taught in 13_explainability.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from labkit.preprocess import tokenize
from labkit.serve.protocol import HTTPError, error_answer, parse_body, preprocess_inputs

OUTCOMES = ("ok", "rejected", "bad_input", "error", "unavailable")


@dataclass(frozen=True)
class ExplainConfig:
    """Admission control and perturbation shape of /explain."""
    max_concurrent: int = 1   # explanations computing at once: each adds up to 33 rows to the batcher
    queue_limit: int = 4      # admitted explanations (computing + waiting); beyond it -> 429
    max_items: int = 4        # inputs per /explain request
    patch: int = 8            # image occlusion patch side (pixels): 16 patches on a 32x32 image

    def __post_init__(self) -> None:
        for name in ("max_concurrent", "queue_limit", "max_items", "patch"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {getattr(self, name)!r}")
        if self.queue_limit < self.max_concurrent:
            raise ValueError("queue_limit must be >= max_concurrent")


def text_perturbations(ids: np.ndarray, pad_id: int = 0) -> np.ndarray:
    """(n + 1, T) rows: the token ids, then the ids with word i removed (later words shift left)."""
    n = int((ids != pad_id).sum())
    rows = [ids] + [np.concatenate([ids[:i], ids[i + 1:], [pad_id]]) for i in range(n)]
    return np.stack(rows)


def image_perturbations(image: np.ndarray, patch: int) -> np.ndarray:
    """(P + 1, C, H, W) rows: the image, then the image with each patch x patch square set to 0."""
    _, h, w = image.shape
    rows = [image]
    for top in range(0, h, patch):
        for left in range(0, w, patch):
            occluded = image.copy()
            occluded[:, top:top + patch, left:left + patch] = 0.0
            rows.append(occluded)
    return np.stack(rows)


def occlusion_from(probs: np.ndarray) -> tuple[int, list[float], list[float]]:
    """(label, probabilities, drop in p(label) when each part is removed) from the perturbation forward."""
    label = int(probs[0].argmax())
    return label, probs[0].tolist(), (probs[0, label] - probs[1:, label]).tolist()


class Explainer:
    """The /explain endpoint over a labkit.serve.app.Service, with its own bounded admission."""

    def __init__(self, service, config: ExplainConfig = ExplainConfig()):
        self.service, self.config = service, config
        self.admitted = 0                                   # computing + waiting for a slot
        self.slots = asyncio.Semaphore(config.max_concurrent)
        counter = Counter("labkit_explain_requests", "Explain requests by outcome", ["outcome"],
                          registry=service.metrics.registry)
        self.outcome = {name: counter.labels(outcome=name) for name in OUTCOMES}

    async def handle(self, request: Request) -> Response:
        """Answer one POST /explain (admission first, before reading the body)."""
        rid = request.headers.get("x-request-id") or self.service.next_id()
        if self.service.status != "ok" or self.service.batcher is None:
            return self._error(HTTPError(503, "unavailable", f"no model to explain (status "
                                         f"{self.service.status})", 1), rid, "unavailable")
        if self.admitted >= self.config.queue_limit:
            return self._error(HTTPError(429, "explain_queue_full", f"{self.admitted} explanations admitted; "
                                         f"limit {self.config.queue_limit}", 1), rid, "rejected")
        self.admitted += 1
        try:
            inputs, _ = parse_body(await request.body(), self.config.max_items)
            x = preprocess_inputs(self.service.preprocess, inputs)
            async with self.slots:
                payload = await self._explain(x, inputs)
        except HTTPError as err:
            return self._error(err, rid, "bad_input")
        except Exception as err:  # a failed forward: this explanation only
            return self._error(HTTPError(500, "explain_failed", f"{type(err).__name__}: {err}"), rid, "error")
        finally:
            self.admitted -= 1
        self.outcome["ok"].inc()
        return Response(json.dumps({"request_id": rid, **payload}), 200, {"X-Request-Id": rid},
                        media_type="application/json")

    async def _explain(self, x: np.ndarray, inputs: list) -> dict:
        start, text = time.perf_counter(), self.service.config.model == "text"
        rows = [text_perturbations(row) if text else image_perturbations(row, self.config.patch) for row in x]
        results = await asyncio.gather(*(self.service.batcher.submit(r) for r in rows))  # batched with /predict
        out = [occlusion_from(np.asarray(probs)) for probs, _ in results]
        answer = {"labels": [o[0] for o in out], "probabilities": [o[1] for o in out], "method": "occlusion",
                  "attributions": [o[2] for o in out], "rows_forwarded": int(sum(len(r) for r in rows)),
                  "explain_ms": (time.perf_counter() - start) * 1e3}
        if text:
            answer["tokens"] = [tokenize(s)[: len(o[2])] for s, o in zip(inputs, out)]
        return answer

    def _error(self, err: HTTPError, rid: str, outcome: str) -> Response:
        self.outcome[outcome].inc()
        headers = {"X-Request-Id": rid}
        if err.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, round(err.retry_after_s)))
        return Response(json.dumps(error_answer(err)), err.status, headers, media_type="application/json")


def make_routes(service, config: ExplainConfig = ExplainConfig()) -> list[Route]:
    """The /explain route over `service` with `config`."""
    return [Route("/explain", Explainer(service, config).handle, methods=["POST"])]


def routes(service) -> list[Route]:
    """The extension hook: `ServeConfig(extensions="labkit.serve.explaining:routes")`."""
    return make_routes(service)
