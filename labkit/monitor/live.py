"""Steady background load for a live monitoring demo, and the labelled fault windows it runs through.

    with BackgroundLoad(url + "/predict", bodies, rate=100) as load:
        ... inject a fault, wait for an alert, heal ...
    load.result().counts()

The load generator (labkit.serve.loadgen) runs open-loop in slices of `slice_s` in a thread until stopped,
so the demo can last as long as the alert takes; every slice's records are kept, none is lost.
Taught in 12_monitoring_and_alerting.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from labkit.serve.loadgen import run_open_loop
from labkit.serve.records import LoadResult


class BackgroundLoad:
    """Open-loop Poisson load in a background thread until stop(); a context manager."""

    def __init__(self, url: str, bodies: Sequence[bytes], rate: float, slice_s: float = 1.0, seed: int = 0):
        self.url, self.bodies, self.rate, self.slice_s, self.seed = url, list(bodies), rate, slice_s, seed
        self.results: list[LoadResult] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labkit-background-load", daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            self.results.append(run_open_loop(self.url, self.bodies, self.rate, duration_s=self.slice_s,
                                              seed=self.seed + i, timeout_s=5.0))
            i += 1

    def start(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def result(self) -> LoadResult:
        """Every slice's records as one LoadResult (indices restart in each slice)."""
        records = [r for res in self.results for r in res.records]
        return LoadResult(records, "open", {"rate": self.rate, "slices": len(self.results)})

    def __enter__(self) -> BackgroundLoad:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class FaultLog:
    """Wall-clock start and end of each injected fault: the labels anomaly detectors are scored against."""
    windows: list[tuple[float, float, str]] = field(default_factory=list)
    _open: dict[str, float] = field(default_factory=dict)

    def begin(self, kind: str) -> None:
        self._open[kind] = time.time()

    def end(self, kind: str) -> None:
        self.windows.append((self._open.pop(kind), time.time(), kind))

    def labels(self, times_s: Sequence[float], lag_s: float = 0.0) -> np.ndarray:
        """1 where a time falls inside a fault window (shifted by lag_s: a rate window sees a fault late)."""
        t = np.asarray(times_s, dtype=float)
        y = np.zeros(len(t), dtype=int)
        for start, end, _ in self.windows:
            y[(t >= start) & (t < end + lag_s)] = 1
        return y


def plot_series(times_s: Sequence[float], X: np.ndarray, names: Sequence[str], fault_windows, ax_row=None):
    """One panel per metric over time, the fault windows shaded (times relative to the first sample)."""
    import matplotlib.pyplot as plt

    t0 = times_s[0]
    axes = ax_row if ax_row is not None else plt.subplots(1, len(names), figsize=(4 * len(names), 2.6))[1]
    for j, (ax, name) in enumerate(zip(axes, names)):
        ax.plot(np.asarray(times_s) - t0, X[:, j], lw=1.2)
        for start, end, kind in fault_windows:
            ax.axvspan(start - t0, end - t0, color="tab:red" if kind == "errors" else "tab:orange", alpha=0.2)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("s")
    plt.tight_layout()
    return axes
