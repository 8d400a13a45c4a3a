"""Offered load that steps between levels: one open-loop run per step, summarised per level and over time.

Each step is its own open-loop run (Poisson arrivals at that step's rate), so a step's backlog is answered
before the next begins. Wall-clock start times are kept so a server's own history (GET /tuning) can be
drawn on the same time axis. Taught in 11_dynamic_tuning.
"""
from __future__ import annotations

import json
import time
import urllib.request

from labkit.serve.loadgen import run_open_loop
from labkit.serve.slo import meets_slo


def schedule(low_rps: float, high_rps: float, step_s: float, cycles: int = 1) -> list[tuple[str, float, float]]:
    """[(level name, rate req/s, seconds), ...]: low, high, repeated `cycles` times."""
    if not 0 < low_rps < high_rps or step_s <= 0 or cycles < 1:
        raise ValueError(f"need 0 < low < high, step_s > 0, cycles >= 1; got {low_rps}, {high_rps}, {step_s}, {cycles}")
    return [(name, rate, step_s) for _ in range(cycles) for name, rate in (("low", low_rps), ("high", high_rps))]


def run_steps(url: str, bodies: list[bytes], steps: list[tuple[str, float, float]], slo_ms: float,
              timeout_s: float = 0.5, seed: int = 0) -> dict:
    """Run the steps back to back: {"steps": [summary + level + start wall time], "latency": DataFrame with
    one row per request (wall-clock send time, latency, outcome, level)}."""
    import pandas as pd

    rows, frames = [], []
    for k, (level, rate, seconds) in enumerate(steps):
        wall0 = time.time()
        result = run_open_loop(url, bodies, rate, duration_s=seconds, timeout_s=timeout_s, seed=seed + k)
        s = result.summary(slo_ms)
        rows.append({"step": k, "level": level, "start_wall_s": wall0, **s, "meets_slo": meets_slo(s, slo_ms)})
        df = result.to_frame()[["intended_s", "latency_ms", "outcome"]]
        frames.append(df.assign(wall_s=wall0 + df["intended_s"], level=level, step=k))
    return {"steps": pd.DataFrame(rows), "latency": pd.concat(frames, ignore_index=True)}


def level_table(latency, slo_ms: float, window_s: float | None = None):
    """Per level from the pooled request records: p99 of ok answers (ms), goodput (ok within SLO per second
    of that level's load), failed share. window_s drops each step's first seconds (the controller's reaction)."""
    import numpy as np
    import pandas as pd

    df = latency if window_s is None else latency[latency["intended_s"] >= window_s]
    out = {}
    for level, g in df.groupby("level"):
        ok = g[g["outcome"] == "ok"]["latency_ms"].to_numpy()
        seconds = g.groupby("step")["intended_s"].agg(lambda t: t.max() - t.min()).sum()
        out[level] = {"p99_ms": float(np.percentile(ok, 99)) if ok.size else float("nan"),
                      "goodput_rps": float((ok <= slo_ms).sum() / max(seconds, 1e-9)),
                      "failed_fraction": float((g["outcome"] != "ok").mean()), "requests": len(g)}
    return pd.DataFrame(out).T


def tuning_history(base_url: str, since_s: float = 0.0):
    """The controller's history from GET /tuning as a DataFrame (one row per decision)."""
    import pandas as pd

    with urllib.request.urlopen(f"{base_url.rstrip('/')}/tuning?since_s={since_s}", timeout=10) as response:
        return pd.DataFrame(json.loads(response.read())["history"])
