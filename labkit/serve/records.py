"""What a load run produced: one Record per request, the LoadResult that counts and summarizes them, JSON.

Every request ends in exactly one outcome: ok (2xx) / rejected (429, 503) / error (other status,
connection error) / timeout. Latency is measured from the request's intended send time in an open loop
(no coordinated omission) and from its send time in a closed loop. Taught in 09_async_serving.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

OUTCOMES = ("ok", "rejected", "error", "timeout")
REJECT_STATUSES = (429, 503)
THROTTLED = "throttled"  # Record.error of a request the client refused itself (status 0, outcome rejected)


@dataclass(slots=True)
class Record:
    """One request: times in seconds from the run's start, latency from the intended send time."""
    index: int
    intended_s: float   # when the request should have been sent
    sent_s: float       # when its task actually started (NaN if it never did)
    latency_ms: float   # completion - intended (open loop) / completion - send (closed loop)
    status: int         # HTTP status, 0 when there was no response
    outcome: str        # one of OUTCOMES
    batch_size: int = 0  # the server's "batch_size" for an ok answer, 0 when unknown
    error: str = ""      # exception class name for errors/timeouts


@dataclass
class LoadResult:
    """Every request's record plus how the run was configured. Taught in 09_async_serving."""
    records: list[Record]
    mode: str                     # "open" | "closed"
    config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        counts = self.counts()
        if sum(counts.values()) != len(self.records):  # nothing may go missing or be counted twice
            raise RuntimeError(f"request accounting broken: {counts} vs {len(self.records)} sent")

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(OUTCOMES, 0)
        for r in self.records:
            out[r.outcome] += 1
        return out

    def to_frame(self):
        """One row per request (pandas DataFrame)."""
        import pandas as pd

        return pd.DataFrame([asdict(r) for r in self.records], columns=list(Record.__dataclass_fields__))

    def elapsed_s(self) -> float:
        """From the start to the last completion (at least to the last intended send)."""
        ends = [r.intended_s + r.latency_ms / 1e3 for r in self.records]
        return max(ends + [r.intended_s for r in self.records] + [1e-9])

    def summary(self, slo_ms: float | None = None) -> dict:
        """Counts, rates (req/s) and latency percentiles (ms); goodput = ok within slo_ms per second."""
        counts, elapsed = self.counts(), self.elapsed_s()
        lat = np.array([r.latency_ms for r in self.records if r.outcome == "ok"])
        rej = np.array([r.latency_ms for r in self.records if r.outcome == "rejected" and r.error != THROTTLED])
        throttled = sum(r.error == THROTTLED for r in self.records)
        lag = np.array([(r.sent_s - r.intended_s) * 1e3 for r in self.records if not math.isnan(r.sent_s)])
        good = int((lat <= slo_ms).sum()) if slo_ms is not None else counts["ok"]
        sent = len(self.records)
        rate = self.config.get("rate")
        batches = [r.batch_size for r in self.records if r.batch_size > 0]
        return {"mode": self.mode, "sent": sent, **counts,
                "offered_rps": float(rate) if rate else sent / elapsed,
                "throughput_rps": counts["ok"] / elapsed, "goodput_rps": good / elapsed, "slo_ms": slo_ms,
                "p50_ms": _pct(lat, 50), "p90_ms": _pct(lat, 90), "p99_ms": _pct(lat, 99),
                "p999_ms": _pct(lat, 99.9),
                "rejection_rate": counts["rejected"] / max(sent, 1), "throttled": throttled,
                "reject_p99_ms": _pct(rej, 99),  # the server's refusals only: a local refusal takes ~0 ms
                "failed_fraction": (sent - counts["ok"]) / max(sent, 1),
                "mean_batch_size": float(np.mean(batches)) if batches else float("nan"),
                "lag_p99_ms": _pct(lag, 99), "lag_max_ms": float(lag.max()) if lag.size else float("nan"),
                "elapsed_s": elapsed}

    def to_json(self, path: str | Path, slo_ms: float | None = None) -> Path:
        """Write {"config", "summary", "records"} as JSON."""
        doc = {"config": self.config, "summary": self.summary(slo_ms),
               "records": [asdict(r) for r in self.records]}
        Path(path).write_text(json.dumps(jsonable(doc), default=str))
        return Path(path)

    def to_csv(self, path: str | Path) -> Path:
        """Write one CSV row per request."""
        self.to_frame().to_csv(path, index=False)
        return Path(path)


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if x.size else float("nan")


def jsonable(x):
    """NaN -> None (JSON has no NaN), recursively; numpy scalars -> Python numbers."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    return None if isinstance(x, float) and math.isnan(x) else x
