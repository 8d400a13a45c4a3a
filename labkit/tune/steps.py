"""Offered load that steps between levels: one open-loop run per step, summarised per level and over time.

Each step is its own open-loop run (Poisson arrivals at that step's rate), so a step's backlog is answered
before the next begins. Several servers take turns step by step (drift on a shared machine hits each
alike); each request gets its schedule time, and a server's own history (GET /tuning) is mapped onto the
same axis with the steps' wall-clock start times. Taught in 11_dynamic_tuning.
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


def run_step(url: str, bodies: list[bytes], k: int, step: tuple[str, float, float], offset_s: float,
             slo_ms: float, timeout_s: float = 0.5, seed: int = 0) -> tuple[dict, object]:
    """Step k of a schedule (starting offset_s into it): (its summary row, its requests as a DataFrame with
    schedule time t_s, wall-clock send time wall_s, latency, outcome, level, step)."""
    level, rate, seconds = step
    wall0 = time.time()
    result = run_open_loop(url, bodies, rate, duration_s=seconds, timeout_s=timeout_s, seed=seed + k)
    s = result.summary(slo_ms)
    row = {"step": k, "level": level, "start_wall_s": wall0, "offset_s": offset_s, **s,
           "meets_slo": meets_slo(s, slo_ms)}
    df = result.to_frame()[["intended_s", "latency_ms", "outcome"]]
    return row, df.assign(t_s=offset_s + df["intended_s"], wall_s=wall0 + df["intended_s"], level=level, step=k)


def run_interleaved(urls: dict[str, str], bodies: list[bytes], steps: list[tuple[str, float, float]],
                    slo_ms: float, timeout_s: float = 0.5, seed: int = 0) -> dict[str, dict]:
    """Every server gets the same schedule; step k runs on each server in turn before step k+1, so drift on a
    shared machine hits all alike. name -> {"steps": one summary row per step, "latency": one row per request}."""
    import pandas as pd

    rows: dict[str, list] = {name: [] for name in urls}
    frames: dict[str, list] = {name: [] for name in urls}
    offset_s = 0.0
    for k, step in enumerate(steps):
        for name, url in urls.items():
            row, df = run_step(url, bodies, k, step, offset_s, slo_ms, timeout_s, seed)
            rows[name].append(row)
            frames[name].append(df)
        offset_s += step[2]
    return {name: {"steps": pd.DataFrame(rows[name]), "latency": pd.concat(frames[name], ignore_index=True)}
            for name in urls}


def on_schedule(history, steps_table, slack_s: float = 0.2):
    """The controller's history rows that fall inside a step of this server, with their schedule time t."""
    import pandas as pd

    parts = []
    for _, step in steps_table.iterrows():
        start, end = step["start_wall_s"], step["start_wall_s"] + step["elapsed_s"] + slack_s
        inside = history[(history["t_s"] >= start) & (history["t_s"] < end)]
        parts.append(inside.assign(t=step["offset_s"] + inside["t_s"] - start, step=step["step"]))
    return pd.concat(parts, ignore_index=True) if parts else history.iloc[:0]


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


def rolling_p99(latency, bin_s: float = 0.25):
    """p99 of ok answers per bin of schedule time (the request's intended send time): a Series."""
    import numpy as np

    ok = latency[latency["outcome"] == "ok"]
    return ok.groupby((ok["t_s"] // bin_s) * bin_s)["latency_ms"].agg(lambda x: float(np.percentile(x, 99))).rename("p99_ms")


def plot_steps(runs: dict, slo_ms: float, history=None, bin_s: float = 0.25):
    """p99 per time bin for each run (dict name -> run_steps result), the SLO line, and, if given, the
    controller's max wait and max batch on a second panel. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2 if history is not None else 1, 1, figsize=(9, 5.5 if history is not None else 3.5),
                             sharex=True, squeeze=False)
    ax = axes[0, 0]
    for name, run in runs.items():
        p99 = rolling_p99(run["latency"], bin_s)
        ax.plot(p99.index, p99.values, marker=".", label=name)
    ax.axhline(slo_ms, color="red", linestyle="--", label=f"SLO {slo_ms:g} ms")
    ax.set(yscale="log", ylabel=f"p99 per {bin_s:g} s (ms)", title="offered load steps low -> high")
    ax.legend(fontsize=8)
    if history is not None:
        ax2 = axes[1, 0]
        ax2.step(history["t"], history["max_wait_ms"], where="post", label="max wait (ms)")
        ax2.set(xlabel="schedule time (s)", ylabel="max wait (ms)")
        twin = ax2.twinx()
        twin.step(history["t"], history["max_batch"], where="post", color="tab:green", label="max batch")
        twin.set_ylabel("max batch (rows)")
        ax2.legend(loc="upper left", fontsize=8)
        twin.legend(loc="upper right", fontsize=8)
    else:
        ax.set_xlabel("schedule time (s)")
    fig.tight_layout()
    return fig
