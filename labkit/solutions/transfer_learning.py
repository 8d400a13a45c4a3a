import copy

import torch
from torch import nn

from labkit.models import SmallCNN


def make_transfer_model(pretrained: SmallCNN, num_classes: int) -> nn.Module:
    """A copy of pretrained.features, then a pooling head: (N, 3, H, W) -> (N, num_classes)."""
    features = copy.deepcopy(pretrained.features)  # a copy: fine-tuning must not train the original too
    channels = [m for m in features.modules() if isinstance(m, nn.Conv2d)][-1].out_channels
    return nn.Sequential(
        features,                  # (N, C, H', W'), any H and W
        nn.AdaptiveAvgPool2d(1),   # (N, C, 1, 1)
        nn.Flatten(),              # (N, C)
        nn.Linear(channels, num_classes),
    )


def finetune(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """Train model on a few labelled images X (N, 3, 32, 32), y (N,); return the trained model."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)  # every layer: the features adapt too
    model.train()
    for _ in range(40):  # 50 images fit in one batch: 40 steps take about a second
        loss = nn.functional.cross_entropy(model(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model
