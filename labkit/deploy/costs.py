"""Hardware choice as arithmetic: measured requests per second per core, and the price of a million requests.

Prices are inputs (what a provider charges per core-hour or GPU-hour), never facts of this course; the
throughputs are measured. Taught in 16_deployment_and_reliability.
"""
from __future__ import annotations

from typing import Sequence

from labkit.serve.benchmark import combined_bound, model_bound


def per_core_rates(models: Sequence[str] = ("text", "image"), engines: Sequence[str] = ("torch", "onnx"),
                   batch: int = 64, repeats: int = 10, r_http_rps: float | None = None):
    """One row per (model, engine): forward rows/s on one thread at `batch` and at 1, and with HTTP added."""
    import pandas as pd

    rows = []
    for model in models:
        for engine in engines:
            m = model_bound(model, batch=batch, threads=1, repeats=repeats, engine=engine)
            row = {"model": model, "engine": engine, "rps_per_core_batched": m["r_model"],
                   "rps_per_core_batch1": m["r_model_batch1"]}
            if r_http_rps:
                row["rps_per_core_served"] = combined_bound(m["r_model"], r_http_rps)
            rows.append(row)
    return pd.DataFrame(rows)


def cost_per_million(rps: float, price_per_hour: float, utilization: float = 1.0) -> float:
    """Price of 1e6 requests on a unit (core, GPU) that serves `rps` req/s at `utilization` of that."""
    if not rps > 0 or price_per_hour < 0 or not 0 < utilization <= 1:
        raise ValueError(f"need rps > 0, price >= 0, 0 < utilization <= 1; got {rps}, {price_per_hour}, "
                         f"{utilization}")
    return price_per_hour / (rps * utilization * 3600.0) * 1e6


def units_needed(peak_rps: float, rps_per_unit: float, utilization: float = 1.0) -> int:
    """Whole units (cores, replicas, GPUs) to serve peak_rps at `utilization` of each one's throughput."""
    import math

    if not rps_per_unit > 0 or peak_rps < 0 or not 0 < utilization <= 1:
        raise ValueError(f"need rps_per_unit > 0, peak_rps >= 0, 0 < utilization <= 1; got {rps_per_unit}, "
                         f"{peak_rps}, {utilization}")
    return max(1, math.ceil(peak_rps / (rps_per_unit * utilization)))


def break_even_rps(rps_per_core: float, core_price_per_hour: float, gpu_price_per_hour: float) -> float:
    """The GPU throughput (req/s) above which one GPU-hour is cheaper per request than core-hours."""
    if not rps_per_core > 0 or not core_price_per_hour > 0 or gpu_price_per_hour < 0:
        raise ValueError("need rps_per_core > 0, core price > 0, GPU price >= 0")
    return rps_per_core * gpu_price_per_hour / core_price_per_hour
