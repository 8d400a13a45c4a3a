import torch
from torch import nn


class TransferClassifier(nn.Module):
    """A frozen pretrained feature extractor and a new trainable linear head."""

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        # nn.Linear acts on the last axis only: pool each channel to one number first, whatever h and w are
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)                    # (N, C, h, w)
        pooled = torch.flatten(self.pool(features), 1)  # (N, C)
        return self.head(pooled)                        # (N, num_classes)
