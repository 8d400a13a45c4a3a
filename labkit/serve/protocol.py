"""The /predict protocol, in one place for every server front (the ASGI app, the Ray deployment, /explain).

A request is a JSON object {"inputs": [...], "deadline_ms": optional number > 0}; an answer is
{"request_id", "labels", "probabilities", "batch_size", "cached"}, plus "deadline_met" when a deadline was given;
an error is {"error", "code"} with an HTTP status. deadline_ms counts from admission (the body read): a request
whose estimated answer time exceeds it is refused at once (503 deadline), one still queued when it passes is
dropped before the forward (503 deadline), and an answer that is ready only after it says so
("deadline_met": false) rather than passing as on time. Each problem is named in the message and has a short machine-readable code.
Taught in 09_async_serving.
"""
from __future__ import annotations

import json
import math
from typing import Callable

import numpy as np

from labkit.serve.preprocessing import InputError

FIELDS = frozenset({"inputs", "deadline_ms"})


class HTTPError(Exception):
    """An error answer: status, short code, message naming the problem, optional Retry-After seconds."""

    def __init__(self, status: int, code: str, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.status, self.code, self.retry_after_s = status, code, retry_after_s


def parse_body(body: bytes, max_items: int) -> tuple[list, float | None]:
    """(inputs, deadline_ms) from a JSON body, or HTTPError 400 naming the problem."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise HTTPError(400, "malformed_json", f"body is not valid JSON: {err}") from None
    if not isinstance(payload, dict):
        raise HTTPError(400, "wrong_type", f"body must be a JSON object; got {type(payload).__name__}")
    unknown = payload.keys() - FIELDS
    if unknown:
        raise HTTPError(400, "unknown_field", f"unknown field(s) {sorted(unknown)}; allowed: {sorted(FIELDS)}")
    return _inputs(payload.get("inputs"), max_items), _deadline_ms(payload.get("deadline_ms"))


def _inputs(inputs: object, max_items: int) -> list:
    if not isinstance(inputs, list):
        what = "missing" if inputs is None else f"a {type(inputs).__name__}"
        raise HTTPError(400, "wrong_type" if inputs is not None else "missing_field",
                        f"field 'inputs' must be a list of inputs; it is {what}")
    if not inputs:
        raise HTTPError(400, "empty_inputs", "field 'inputs' is empty; send 1 or more inputs")
    if len(inputs) > max_items:
        raise HTTPError(400, "too_many_inputs", f"field 'inputs' has {len(inputs)} inputs; the limit is {max_items}")
    return inputs


def _deadline_ms(deadline: object) -> float | None:
    if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, (int, float))
                                 or not math.isfinite(deadline) or deadline <= 0):
        raise HTTPError(400, "bad_field", f"field 'deadline_ms' must be a finite number > 0; got {deadline!r}")
    return deadline


def preprocess_inputs(preprocess: Callable[[list], np.ndarray], inputs: list) -> np.ndarray:
    """preprocess(inputs) -> (k, ...), or HTTPError 400 with the input's own code: checked before anything queues."""
    try:
        return preprocess(inputs)
    except InputError as err:
        raise HTTPError(400, err.code, str(err)) from None


def answer(request_id: str, probs: np.ndarray, batch_size: int, cached: list[bool]) -> dict:
    """The answer for probs (k, K): labels, probabilities, rows in the forward that served it, cache hits."""
    return {"request_id": request_id, "labels": probs.argmax(axis=1).tolist(), "probabilities": probs.tolist(),
            "batch_size": batch_size, "cached": cached}


def error_answer(err: HTTPError) -> dict:
    """The body of an error answer."""
    return {"error": str(err), "code": err.code}
