"""A drifting stream from the course's digits: upright at first, then every digit arrives rotated 90 degrees.

Abrupt drift at a known index, so a detector's delay can be measured in samples. The old and the new
distribution each keep a held-out test set: accuracy on the old one after the drift measures forgetting.
Taught in 14_online_learning.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from labkit.data import load_digits_split


@dataclass(frozen=True)
class StreamConfig:
    """How long the stream is and where it drifts."""
    n_before: int = 600      # upright samples before the drift
    n_after: int = 900       # rotated samples after it
    rotation_k: int = 1      # quarter turns applied after the drift (1 = 90 degrees)
    seed: int = 0


@dataclass(frozen=True, eq=False)
class DriftStream:
    """Stream tensors in arrival order plus test sets of both distributions; drift_at = first drifted index."""
    X: torch.Tensor          # (N, 1, 8, 8) in arrival order
    y: torch.Tensor          # (N,)
    drift_at: int
    X_pretrain: torch.Tensor  # upright training digits the deployed model learned from
    y_pretrain: torch.Tensor
    X_old: torch.Tensor      # held-out upright digits (the old distribution)
    y_old: torch.Tensor
    X_new: torch.Tensor      # the same held-out digits rotated (the new distribution)
    y_new: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


def rotate(X: torch.Tensor, k: int) -> torch.Tensor:
    """Rotate (N, C, H, W) images by k quarter turns (counter-clockwise)."""
    return torch.rot90(X, k, dims=(2, 3)).contiguous()


def make_drift_stream(config: StreamConfig = StreamConfig()) -> DriftStream:
    """Digits drawn (with replacement) from the train+val split: upright, then rotated from drift_at on."""
    split = load_digits_split(seed=config.seed)
    pool_X, pool_y = torch.cat([split.X_train, split.X_val]), torch.cat([split.y_train, split.y_val])
    rng = np.random.default_rng(config.seed)
    idx = torch.from_numpy(rng.integers(0, len(pool_y), config.n_before + config.n_after))
    X, y = pool_X[idx].clone(), pool_y[idx]
    X[config.n_before:] = rotate(X[config.n_before:], config.rotation_k)
    return DriftStream(X, y, config.n_before, split.X_train, split.y_train, split.X_test, split.y_test,
                       rotate(split.X_test, config.rotation_k), split.y_test)
