"""Timing helpers: repeated measurements and their percentiles."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np


def time_calls(fn: Callable[[], object], repeats: int = 50, warmup: int = 5) -> np.ndarray:
    """Wall-clock milliseconds of `repeats` calls of fn after `warmup` unmeasured ones. Taught in 00_welcome."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats}")
    for _ in range(warmup):
        fn()
    samples_ms = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        samples_ms[i] = (time.perf_counter() - start) * 1e3
    return samples_ms


def percentiles(samples_ms: np.ndarray, qs: tuple[float, ...] = (50, 90, 99)) -> dict[str, float]:
    """{'p50_ms': …, 'p90_ms': …, 'p99_ms': …} plus mean and spread (max/min) of the samples."""
    samples_ms = np.asarray(samples_ms, dtype=float)
    if samples_ms.size == 0:
        raise ValueError("no timing samples")
    row = {f"p{q:g}_ms": float(np.percentile(samples_ms, q)) for q in qs}
    row["mean_ms"] = float(samples_ms.mean())
    row["max_over_min"] = float(samples_ms.max() / samples_ms.min()) if samples_ms.min() > 0 else float("inf")
    return row
