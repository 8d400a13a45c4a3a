"""The goodput cliff: goodput against offered load, open loop, past capacity, for each way of refusing work.

Without a limit every request is admitted and waits behind all earlier ones: past capacity the queue grows for as
long as the overload lasts, and answers arrive after the SLO (goodput falls off a cliff). A fixed queue limit
bounds the wait, but each refusal still costs the event loop a read, a parse and a write. The adaptive limit keeps
the queue as short as the latency allows, and the transport holds new requests unread while saturated
(labkit.serve.transport). Client-side throttling (labkit.serve.throttle) stops most of what would be refused
before it is sent. Taught in 09_async_serving (§7b).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from labkit.serve.loadgen import run_open_loop
from labkit.serve.throttle import AdaptiveThrottle

COLUMNS = ["variant", "offered_x", "goodput_x", "ok", "rejected", "throttled", "error", "timeout", "sent",
           "p99_ms", "reject_p99_ms", "lag_p99_ms"]


def goodput_cliff(targets: Mapping[str, tuple[str, float | None]], bodies: Sequence[bytes], capacity_rps: float,
                  multipliers: Sequence[float] = (0.5, 1.0, 2.0, 3.0, 4.0), *, duration_s: float = 2.0,
                  slo_ms: float = 50.0, connections: int = 1024, timeout_s: float = 2.0, seed: int = 0):
    """One row per (variant, offered load): targets maps a variant name to (predict URL, throttle k or None).
    goodput_x = answers within slo_ms per second / capacity_rps. Every request is accounted for (asserted)."""
    import pandas as pd

    if capacity_rps <= 0:
        raise ValueError(f"capacity_rps must be > 0; got {capacity_rps}")
    rows = []
    for name, (url, k) in targets.items():
        for x in multipliers:
            throttle = AdaptiveThrottle(k=k, seed=seed) if k else None
            result = run_open_loop(url, bodies, x * capacity_rps, duration_s=duration_s, timeout_s=timeout_s,
                                   seed=seed, connections=connections, throttle=throttle)
            s = result.summary(slo_ms)
            if s["ok"] + s["rejected"] + s["error"] + s["timeout"] != s["sent"]:
                raise RuntimeError(f"{name} at {x}x: request accounting broken: {s}")
            rows.append({**s, "variant": name, "offered_x": x, "goodput_x": s["goodput_rps"] / capacity_rps})
    return pd.DataFrame(rows)[COLUMNS]
