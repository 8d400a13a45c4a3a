"""Explanation traffic beside prediction traffic: two open-loop generators at once against one server,
/predict at (1 - share) of the rate and /explain at `share` of it, each request accounted for.

Taught in 13_explainability.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from labkit.serve.loadgen import run_open_loop
from labkit.serve.records import LoadResult


def explain_bodies(predict_bodies: Sequence[bytes]) -> list[bytes]:
    """/explain bodies with the same inputs as the /predict ones."""
    return [json.dumps({"inputs": json.loads(b)["inputs"]}).encode() for b in predict_bodies]


def mixed_load(server_url: str, bodies: Sequence[bytes], rate: float, explain_share: float, duration_s: float,
               timeout_s: float = 5.0, seed: int = 0) -> dict[str, LoadResult]:
    """{"predict": ..., "explain": ...} LoadResults; explain_share = 0 runs /predict alone."""
    if not 0 <= explain_share < 1:
        raise ValueError(f"explain_share must be in [0, 1); got {explain_share}")
    runs = {"predict": (server_url + "/predict", rate * (1 - explain_share), seed)}
    if explain_share > 0:
        runs["explain"] = (server_url + "/explain", rate * explain_share, seed + 1)
    ebodies = explain_bodies(bodies)
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = {name: pool.submit(run_open_loop, url, bodies if name == "predict" else ebodies, r,
                                     duration_s=duration_s, timeout_s=timeout_s, seed=s)
                   for name, (url, r, s) in runs.items()}
        return {name: f.result() for name, f in futures.items()}
