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


def accounted_point(url: str, bodies: Sequence[bytes], rate: float, where: str, slo_ms: float | None = None,
                    **load) -> dict:
    """The summary of one open-loop run at `rate` (load: run_open_loop's options); raises unless every request
    sent ended as ok, rejected, error or timeout."""
    s = run_open_loop(url, bodies, rate, **load).summary(slo_ms)
    if s["ok"] + s["rejected"] + s["error"] + s["timeout"] != s["sent"]:
        raise RuntimeError(f"{where}: request accounting broken: {s}")
    return s


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
            s = accounted_point(url, bodies, x * capacity_rps, f"{name} at {x}x", slo_ms=slo_ms,
                                duration_s=duration_s, timeout_s=timeout_s, seed=seed, connections=connections,
                                throttle=throttle)
            rows.append({**s, "variant": name, "offered_x": x, "goodput_x": s["goodput_rps"] / capacity_rps})
    return pd.DataFrame(rows)[COLUMNS]


# ---------------------------------------------------------------- `labkit bench overload`

def capacity_note(config, users: int) -> str | None:
    """A warning when `users` closed-loop users exceed what the server admits at once under overload (the adaptive
    floor, or the fixed limit): the refused ones send their next request at once, so the ok rate they measure
    includes a refusal storm and can read low (bank question serving-19)."""
    from labkit.serve.app import adaptive_floor

    lowest = adaptive_floor(config) if config.adaptive_limit else config.queue_limit
    if users <= lowest:
        return None
    return (f"note: {users} users exceed the {lowest} requests this server admits at once under overload; refused "
            f"users resend at once, so the capacity can read low (compare --users {lowest}, or give --capacity)")


def overload_check(config, bodies: Sequence[bytes], levels: Sequence[float] = (0.8, 3.0), *, users: int = 256,
                   duration_s: float = 8.0, connections: int = 1024, timeout_s: float = 5.0, seed: int = 0,
                   capacity_rps: float | None = None, log=lambda line: None):
    """Issue 13's measurement on one fresh server: capacity from `users` closed-loop users (or `capacity_rps`, to
    offer two servers the same load), then open loop at each level x capacity, in order. One row per level:
    goodput_x = ok answers per second / capacity, and admitted p99 / its p99 at the first level beside it.
    Every request is accounted for (asserted)."""
    import pandas as pd

    from labkit.serve.loadgen import run_closed_loop
    from labkit.serve.process import ServerProcess

    with ServerProcess(config) as server:
        url = server.url + "/predict"
        capacity = capacity_rps or run_closed_loop(url, bodies, users, duration_s=3.0,
                                                   timeout_s=timeout_s).summary()["throughput_rps"]
        log(f"capacity ({'given' if capacity_rps else f'{users} closed-loop users'}): {capacity:.0f} ok req/s")
        note = None if capacity_rps else capacity_note(config, users)
        if note:
            log(note)
        rows = []
        for x in levels:
            s = accounted_point(url, bodies, x * capacity, f"at {x}x", duration_s=duration_s, timeout_s=timeout_s,
                                seed=seed, connections=connections)
            rows.append({"offered_x": x, "capacity_rps": capacity, "goodput_x": s["throughput_rps"] / capacity, **s})
            log(f"{x}x: {s['ok']} ok, {s['rejected']} rejected, p99 {s['p99_ms']:.1f} ms")
    table = pd.DataFrame(rows)
    table["p99_vs_first"] = table["p99_ms"] / table["p99_ms"].iloc[0]
    return table[["offered_x", "capacity_rps", "sent", "ok", "rejected", "error", "timeout", "goodput_x", "p99_ms",
                  "p99_vs_first", "reject_p99_ms", "lag_p99_ms"]]


def add_arguments(parser) -> None:
    """Options of `labkit bench overload`: the server's own flags, then the load's."""
    from labkit.serve.config import add_config_arguments

    add_config_arguments(parser)
    parser.set_defaults(engine="onnx")
    parser.add_argument("--levels", default="0.8,3", help="offered load / capacity, in order (default 0.8,3)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of open-loop load per level")
    parser.add_argument("--users", type=int, default=256, help="closed-loop users that measure the capacity")
    parser.add_argument("--capacity", type=float, help="skip the measurement: this many req/s is 1x (to compare "
                                                       "two servers at the same offered loads)")
    parser.add_argument("--connections", type=int, default=1024, help="the open loop's connections")
    parser.add_argument("--json", action="store_true", help="print the table as JSON records")


def run(args) -> int:
    """Carry out `labkit bench overload` against a fresh `labkit serve` with the given flags."""
    import sys

    from labkit.serve.config import ServeConfig
    from labkit.serve.workloads import sample_bodies

    levels = [float(x) for x in args.levels.split(",")]
    if not levels or min(levels) <= 0:
        raise ValueError(f"--levels must be positive numbers; got {args.levels!r}")
    if args.capacity is not None and not args.capacity > 0:
        raise ValueError(f"--capacity must be > 0 req/s; got {args.capacity}")
    table = overload_check(ServeConfig.from_args(args), sample_bodies(args.model, 256), levels, users=args.users,
                           duration_s=args.duration, connections=args.connections, capacity_rps=args.capacity,
                           log=lambda line: print(line, file=sys.stderr))
    print(table.to_json(orient="records") if args.json else table.round(2).to_string(index=False))
    return 0
