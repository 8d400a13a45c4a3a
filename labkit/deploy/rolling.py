"""A rolling update: replace every replica, one at a time, with a new version, under load, losing nothing.

Per slot: start the new replica (surge: capacity never drops below N), re-point the slot to it, wait until
the old replica has answered everything it holds (the drain), then SIGTERM it. No request meets a closed
socket or a draining server, so nothing fails. Taught in 16_deployment_and_reliability.
"""
from __future__ import annotations

import time

from labkit.deploy.fleet import Fleet
from labkit.serve.config import ServeConfig


def rolling_update(fleet: Fleet, new_config: ServeConfig, drain_timeout_s: float = 30.0,
                   clock=time.perf_counter, t0: float | None = None) -> list[dict]:
    """Replace each running replica of `fleet` with one of new_config; one row of timings (s) per slot."""
    t0 = clock() if t0 is None else t0
    rows = []
    for slot, old in enumerate(list(fleet.servers)):
        if old is None:
            continue
        begin = clock()
        new = fleet.launch(new_config)
        started = clock()
        fleet.point(slot, new)
        retired = fleet.retire(old, drain_timeout_s)
        rows.append({"slot": slot, "at_s": begin - t0, "start_s": started - begin, **retired,
                     "total_s": clock() - begin, "old_pid": old.pid, "new_pid": new.pid})
    return rows
