"""What one explanation costs next to one prediction: model forwards (calls and rows) and milliseconds.

Taught in 13_explainability.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
from torch import nn


class ForwardCounter:
    """Counts a module's forward calls and the rows they carried, through a forward hook (a context manager)."""

    def __init__(self, model: nn.Module):
        self.model, self.calls, self.rows, self._handle = model, 0, 0, None

    def _hook(self, module: nn.Module, args: tuple, output) -> None:
        self.calls += 1
        self.rows += int(args[0].shape[0]) if args and hasattr(args[0], "shape") else 0

    def __enter__(self) -> ForwardCounter:
        self._handle = self.model.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


def explanation_cost(model: nn.Module, explain: Callable[[], object], repeats: int = 3) -> dict[str, float]:
    """Median ms of explain() and the forwards (calls, rows) one call makes through `model`."""
    with ForwardCounter(model) as counter:
        explain()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        explain()
        times.append((time.perf_counter() - start) * 1e3)
    return {"ms": float(np.median(times)), "forward calls": counter.calls, "rows forwarded": counter.rows}
