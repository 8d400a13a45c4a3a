"""Load against an SLO: a sweep over offered rates, whether a run met the SLO, and goodput at the SLO.

Goodput is what counts under load: requests answered ok within the latency SLO, per second. The search
probes increasing open-loop rates and bisects between the last one that met the SLO and the first that
did not. Taught in 09_async_serving.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from labkit.serve.loadgen import run_open_loop


def sweep_open_loop(url: str, bodies: Sequence[bytes], rates: Sequence[float], *, duration_s: float = 2.0,
                    slo_ms: float | None = None, timeout_s: float = 5.0, seed: int = 0, **kwargs):
    """One open-loop run per offered rate; a DataFrame of summaries indexed by offered_rps."""
    import pandas as pd

    rows = [run_open_loop(url, bodies, r, duration_s=duration_s, timeout_s=timeout_s, seed=seed + k,
                          **kwargs).summary(slo_ms) for k, r in enumerate(rates)]
    return pd.DataFrame(rows).set_index("offered_rps")


def meets_slo(summary: dict, slo_ms: float, max_failed: float = 0.01) -> bool:
    """p99 of ok requests within slo_ms and at most max_failed of requests rejected/errored/timed out."""
    return summary["ok"] > 0 and summary["p99_ms"] <= slo_ms and summary["failed_fraction"] <= max_failed


@dataclass
class GoodputSearch:
    """The highest offered rate that met the SLO, the goodput measured there, and every run's summary."""
    rate_rps: float
    goodput_rps: float
    table: object  # DataFrame: one row per run, with a "meets_slo" column


def goodput_at_slo(url: str, bodies: Sequence[bytes], slo_ms: float, rates: Sequence[float], *,
                   duration_s: float = 2.0, refine: int = 0, max_failed: float = 0.01, patience: int = 2,
                   **kwargs) -> GoodputSearch:
    """Scan increasing rates until `patience` misses in a row (one noisy probe does not end the scan), then
    bisect `refine` times between the best rate that met the SLO and the next one that missed it.
    Taught in 09_async_serving."""
    import pandas as pd

    rates = sorted(float(r) for r in rates)
    if not rates or not slo_ms > 0 or patience < 1:
        raise ValueError(f"need rates, slo_ms > 0 and patience >= 1; got {rates}, {slo_ms}, {patience}")
    rows: list[dict] = []

    def probe(rate: float) -> bool:
        s = run_open_loop(url, bodies, rate, duration_s=duration_s, seed=len(rows), **kwargs).summary(slo_ms)
        rows.append({**s, "meets_slo": meets_slo(s, slo_ms, max_failed)})
        return rows[-1]["meets_slo"]

    misses = 0
    for rate in rates:
        misses = 0 if probe(rate) else misses + 1
        if misses >= patience:
            break
    for _ in range(refine):
        passed = [r for r in rows if r["meets_slo"]]
        best = max(passed, key=lambda r: r["offered_rps"]) if passed else None
        above = [r["offered_rps"] for r in rows if not r["meets_slo"] and best and r["offered_rps"] > best["offered_rps"]]
        if best is None or not above:
            break
        probe((best["offered_rps"] + min(above)) / 2)
    table = pd.DataFrame(rows)
    passed = [r for r in rows if r["meets_slo"]]
    if not passed:
        return GoodputSearch(0.0, 0.0, table)
    best = max(passed, key=lambda r: r["offered_rps"])
    return GoodputSearch(best["offered_rps"], best["goodput_rps"], table)
