"""Transfer learning: reuse a pretrained CNN's conv features on a new task, frozen or fine-tuned.

The new head pools the (N, C, H, W) feature map to (N, C) before its one linear layer, so that layer has
C * num_classes + num_classes weights whatever the image size, and never sees a 4-D tensor.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from labkit.models import SmallCNN
from labkit.preprocess import resize_images

MODES = ("frozen", "finetune")  # what from_pretrained does with the copied features


def digits_to_rgb32(X: torch.Tensor, size: int = 32, content: int | None = None) -> torch.Tensor:
    """Grey (N,1,H,W) digits as (N,3,size,size): resized to content px, zero-padded, channel copied. Taught in 04_transfer_learning."""
    if X.ndim != 4 or X.shape[1] != 1:
        raise ValueError(f"expected grey images of shape (N, 1, H, W); got {tuple(X.shape)}")
    content = size if content is None else content
    if not 1 <= content <= size:
        raise ValueError(f"content must be between 1 and size={size}; got {content}")
    before = (size - content) // 2
    after = size - content - before
    # digits are light strokes on 0: padding with 0 widens the background, centring the digit
    small = resize_images(X, content)  # (N, 1, content, content)
    return nn.functional.pad(small, (before, after, before, after)).repeat(1, 3, 1, 1)  # (N, 3, size, size)


def freeze(module: nn.Module) -> nn.Module:
    """Stop gradients to every parameter of module (returned for chaining). Taught in 04_transfer_learning."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def unfreeze(module: nn.Module) -> nn.Module:
    """Let gradients reach every parameter of module again (returned for chaining). Taught in 04_transfer_learning."""
    for p in module.parameters():
        p.requires_grad_(True)
    return module


def is_frozen(module: nn.Module) -> bool:
    """True when module has parameters and none of them takes gradients. Taught in 04_transfer_learning."""
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params)


class TransferNet(nn.Module):
    """Pretrained conv features -> global average pool -> flatten -> linear. Taught in 04_transfer_learning."""

    def __init__(self, features: nn.Module, num_classes: int, feature_channels: int):
        super().__init__()
        if num_classes < 2 or feature_channels < 1:
            raise ValueError(f"need num_classes >= 2 and feature_channels >= 1; got {num_classes}, {feature_channels}")
        self.features, self.feature_channels = features, feature_channels
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),  # (N, C, H, W) -> (N, C, 1, 1): any H, W
            nn.Flatten(),  # (N, C)
            nn.Linear(feature_channels, num_classes),  # (N, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.features(x)  # (N, C, H', W')
        if fmap.ndim != 4 or fmap.shape[1] != self.feature_channels:
            raise ValueError(f"features gave shape {tuple(fmap.shape)}; the head expects "
                             f"(N, {self.feature_channels}, H, W)")
        return self.head(fmap)

    def train(self, mode: bool = True) -> TransferNet:
        """As nn.Module.train, but frozen features stay in eval mode (batch-norm statistics do not drift)."""
        super().train(mode)
        if is_frozen(self.features):
            self.features.eval()
        return self


def last_conv_channels(features: nn.Module) -> int:
    """out_channels of the last Conv2d in features. Taught in 04_transfer_learning."""
    convs = [m for m in features.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("features contain no Conv2d layer")
    return convs[-1].out_channels


def from_pretrained(cnn: SmallCNN, num_classes: int, mode: str = "frozen") -> TransferNet:
    """A TransferNet on a copy of cnn's conv features, frozen or trainable (finetune). Taught in 04_transfer_learning."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    features = copy.deepcopy(cnn.features)  # the pretrained model itself stays untouched
    (freeze if mode == "frozen" else unfreeze)(features)
    return TransferNet(features, num_classes, last_conv_channels(features))


def from_scratch(cnn: SmallCNN, num_classes: int) -> TransferNet:
    """The same TransferNet architecture as from_pretrained, but with freshly initialized features. Taught in 04_transfer_learning."""
    features = copy.deepcopy(cnn.features)
    for module in features.modules():
        if module is not features and hasattr(module, "reset_parameters"):
            module.reset_parameters()  # conv: new random weights; batch norm: unit scale, fresh statistics
    return TransferNet(unfreeze(features), num_classes, last_conv_channels(features))
