import torch
from torch import nn


class ShapesCNN(nn.Module):
    """Two conv blocks and a two-layer classifier for 32x32 RGB images."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # (N, 16, 16, 16)
            nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N, 32, 8, 8)
        )
        # padding=1 keeps 32x32 through each conv; each 2x2 pooling halves it: 32 -> 16 -> 8
        self.classifier = nn.Sequential(
            nn.Flatten(),                      # (N, 32 * 8 * 8)
            nn.Linear(32 * 8 * 8, 64), nn.ReLU(),
            nn.Linear(64, num_classes),        # (N, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
