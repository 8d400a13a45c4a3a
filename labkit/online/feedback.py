"""Labelled feedback on the /predict protocol: a request may carry "labels" next to its "inputs".

In production labels arrive later (a click, a human review); here the client sends them with the request so
the router can score each version's answers at once. The router strips them before a replica sees the body,
so the model server's protocol (labkit.serve.protocol) stays as it is. Taught in 14_online_learning.
"""
from __future__ import annotations

import json


def split_labels(body: bytes) -> tuple[bytes, list | None]:
    """(body without "labels", the labels) when the request carries feedback labels; else (body, None)."""
    if b'"labels"' not in body:
        return body, None
    try:
        payload = json.loads(body)
        labels = payload.pop("labels")
    except (ValueError, AttributeError, KeyError, TypeError):
        return body, None   # not ours to judge: the replica names what is wrong with it
    return json.dumps(payload).encode(), labels if isinstance(labels, list) else None


def labelled_bodies(inputs: list, labels: list[int], items: int = 1) -> list[bytes]:
    """/predict bodies of `items` inputs each that also carry their "labels" (feedback the router scores)."""
    return [json.dumps({"inputs": inputs[i:i + items], "labels": [int(y) for y in labels[i:i + items]]}).encode()
            for i in range(0, len(inputs) - items + 1, items)]


def count_correct(predicted: object, labels: list) -> int:
    """How many predicted labels equal the given labels, position by position."""
    if not isinstance(predicted, list):
        return 0
    return sum(int(p == y) for p, y in zip(predicted, labels))
