"""Tiny seeded data and models for exercise tests: noisy blobs and a full-batch trainer."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def blobs(n: int, features: int, classes: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n points (n, features) in `classes` noisy blobs (class c centred at 2 on axis c) and labels (n,)."""
    if classes > features:
        raise ValueError(f"need classes <= features to place each blob on its own axis; got {classes} > {features}")
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    return torch.randn(n, features, generator=g) * noise + F.one_hot(y, features).float() * 2, y


def train_full_batch(model: nn.Module, X: torch.Tensor, y: torch.Tensor, lr: float, steps: int = 40) -> nn.Module:
    """Adam on the whole batch for `steps` steps; returns the model in eval mode with no gradients left behind."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(model(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)  # a test may check that no gradients appear
    return model.eval()
