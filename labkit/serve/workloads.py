"""What a load run sends and when: Poisson arrival times, sample request bodies, skewed (Zipf) repeats.

Taught in 09_async_serving.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np


def poisson_arrivals(rate: float, *, count: int | None = None, duration_s: float | None = None,
                     seed: int = 0) -> np.ndarray:
    """Intended send times (s) of a Poisson process at `rate` req/s: `count` of them and/or within duration_s."""
    check_stop(count, duration_s)
    if not rate > 0:
        raise ValueError(f"rate must be > 0 req/s; got {rate}")
    n = count if count is not None else int(rate * duration_s + 10 * math.sqrt(rate * duration_s) + 10)
    times = np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, size=n))
    return times[times < duration_s] if duration_s is not None else times


def sample_bodies(model: str = "text", n: int = 64, items: int = 1, seed: int = 0) -> list[bytes]:
    """n distinct /predict bodies of `items` inputs each: corpus sentences or 3x32x32 shape images."""
    from labkit.data import generate_negation_corpus, generate_shapes

    if model not in ("text", "image"):
        raise ValueError(f"model must be 'text' or 'image'; got {model!r}")
    if n < 1 or items < 1:
        raise ValueError(f"n and items must be >= 1; got n={n}, items={items}")
    if model == "text":
        inputs = [s for s, _ in generate_negation_corpus(n * items, seed)]
    else:
        X, _ = generate_shapes(math.ceil(n * items / 4), seed)            # (N, 32, 32, 3) uint8, 4 classes
        inputs = np.round(X.transpose(0, 3, 1, 2) / 255, 3).tolist()      # (N, 3, 32, 32) in [0, 1]
    return [json.dumps({"inputs": inputs[i * items:(i + 1) * items]}).encode() for i in range(n)]


def zipf_bodies(distinct: Sequence[bytes], n: int, s: float = 1.1, seed: int = 0) -> list[bytes]:
    """n bodies drawn from `distinct` with P(rank k) ∝ 1/k^s: a skewed workload where caching pays."""
    if not distinct or n < 1 or s < 0:
        raise ValueError(f"need distinct bodies, n >= 1 and s >= 0; got {len(distinct)}, n={n}, s={s}")
    p = 1.0 / np.arange(1, len(distinct) + 1) ** s
    idx = np.random.default_rng(seed).choice(len(distinct), size=n, p=p / p.sum())
    return [distinct[i] for i in idx]


def check_stop(count: int | None, duration_s: float | None) -> None:
    """ValueError unless a run is told when to stop: count >= 1 requests and/or duration_s > 0 seconds."""
    if count is None and duration_s is None:
        raise ValueError("give count or duration_s (or both): a load run must stop by itself")
    if count is not None and count < 1:
        raise ValueError(f"count must be >= 1; got {count}")
    if duration_s is not None and not duration_s > 0:
        raise ValueError(f"duration_s must be > 0; got {duration_s}")


def read_bodies(path: Path) -> list[bytes]:
    """Bodies from a file holding one JSON document or JSON Lines (one body per line)."""
    text = Path(path).read_text()
    try:
        json.loads(text)
        return [text.strip().encode()]
    except ValueError:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        for n, line in enumerate(lines, 1):
            try:
                json.loads(line)
            except ValueError as err:
                raise ValueError(f"{path}: line {n} is not JSON ({err})") from None
        return [ln.encode() for ln in lines]
