"""Open-loop load in the background, in 1-second chunks, until told to stop (or along a rate schedule).

Each chunk is one labkit.serve.loadgen open-loop run, so every request ends in exactly one outcome and the
chunks add up: ok + rejected + error + timeout = sent. Taught in 16_deployment_and_reliability.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from labkit.serve.loadgen import run_open_loop
from labkit.serve.records import OUTCOMES, LoadResult


@dataclass
class Chunk:
    start_s: float            # seconds from the load's start
    rate_rps: float
    result: LoadResult


@dataclass
class BackgroundLoad:
    """Chunks of open-loop load at rate_at(t) req/s on a thread; stop() ends it after the current chunk."""
    url: str
    bodies: Sequence[bytes]
    rate_at: Callable[[float], float]
    chunk_s: float = 1.0
    timeout_s: float = 5.0
    max_s: float = 120.0
    chunks: list[Chunk] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labkit-deploy-load", daemon=True)
        self.t0 = 0.0

    def start(self) -> BackgroundLoad:
        self.t0 = time.perf_counter()
        self._thread.start()
        return self

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.t0

    def _run(self) -> None:
        k = 0
        while not self._stop.is_set() and self.elapsed_s() < self.max_s:
            t = self.elapsed_s()
            rate = self.rate_at(t)
            result = run_open_loop(self.url, self.bodies, rate, duration_s=self.chunk_s,
                                   timeout_s=self.timeout_s, seed=k)
            self.chunks.append(Chunk(t, rate, result))
            k += 1

    def stop(self) -> list[Chunk]:
        self._stop.set()
        self._thread.join()
        return self.chunks

    def __enter__(self) -> BackgroundLoad:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def totals(chunks: Sequence[Chunk]) -> dict[str, int]:
    """Outcome counts over all chunks, plus "sent"."""
    out = dict.fromkeys(OUTCOMES, 0)
    for c in chunks:
        for k, v in c.result.counts().items():
            out[k] += v
    out["sent"] = sum(len(c.result.records) for c in chunks)
    return out


def timeline(chunks: Sequence[Chunk], slo_ms: float | None = None):
    """One row per chunk: start_s, offered rate, counts, p99_ms (a DataFrame)."""
    import pandas as pd

    rows = []
    for c in chunks:
        s = c.result.summary(slo_ms)
        rows.append({"start_s": c.start_s, "offered_rps": c.rate_rps, "sent": s["sent"], "ok": s["ok"],
                     "rejected": s["rejected"], "error": s["error"], "timeout": s["timeout"],
                     "p99_ms": s["p99_ms"], "goodput_rps": s["goodput_rps"]})
    return pd.DataFrame(rows)
