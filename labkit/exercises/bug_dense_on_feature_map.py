"""Find the bug: a transfer-learning head put straight on a 4-D feature map."""
import torch
from torch import nn

from labkit.grading.exercise import Exercise

TASK = """
`TransferClassifier(backbone, num_features, num_classes)` reuses a pretrained convolutional feature extractor
(`backbone`, frozen) and trains only a new linear head. The backbone maps images (N, 3, H, W) to a feature
map (N, num_features, h, w); the classifier must return class scores of shape (N, num_classes). With some
image sizes it crashes; with others it runs and returns a tensor that is not (N, num_classes), which is
worse.

**Find the bug and fix it.** The head must keep exactly one `nn.Linear(num_features, num_classes)` as its
only trainable layer, the backbone must stay frozen, and the classifier must work for any image size the
backbone accepts. Check which axis `nn.Linear` acts on. Taught in 04_transfer_learning (`labkit/transfer.py`).
"""

STUB = '''
import torch
from torch import nn


class TransferClassifier(nn.Module):
    """A frozen pretrained feature extractor and a new trainable linear head."""

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.head = nn.Linear(num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        return self.head(features)
'''


def small_cnn_features() -> nn.Sequential:
    """Conv blocks like labkit's SmallCNN for RGB images: 32 channels out, each side divided by 4."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))


def _scores(sub, size: int, n: int = 3, num_classes: int = 5) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = sub.TransferClassifier(small_cnn_features(), num_features=32, num_classes=num_classes)
    images = torch.randn(n, 3, size, size)
    try:
        return model, model(images)
    except RuntimeError as err:
        raise AssertionError(f"forward on images of shape {tuple(images.shape)} failed: {err}. Print the "
                             f"shape the backbone returns and the shape the head expects.") from None


def test_scores_shape(sub):
    """images of shape (3, 3, 128, 128) give scores of shape (3, 5)"""
    _, out = _scores(sub, size=128)
    assert tuple(out.shape) == (3, 5), (f"scores have shape {tuple(out.shape)}, expected (3, 5): one row of "
                                        f"class scores per image")


def test_any_image_size(sub):
    """32x32 and 48x48 images both give (N, num_classes) scores"""
    for size in (32, 48):
        _, out = _scores(sub, size=size, n=2)
        assert tuple(out.shape) == (2, 5), (f"for {size}x{size} images the scores have shape "
                                            f"{tuple(out.shape)}, expected (2, 5)")


def test_only_the_head_trains(sub):
    """backbone frozen; the only trainable parameters are one Linear(32, 5), and they get gradients"""
    model, out = _scores(sub, size=128)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sorted(p.numel() for p in trainable) == [5, 32 * 5], (
        f"trainable parameter sizes {sorted(p.numel() for p in trainable)}; expected only the head's "
        f"weight (32 x 5) and bias (5)")
    out.sum().backward()
    assert all(p.grad is not None for p in trainable), "the head's parameters received no gradient"


EXERCISE = Exercise(
    name="bug_dense_on_feature_map", title="Find the bug · A linear head on a feature map", task=TASK,
    stub=STUB, tests=(test_scores_shape, test_any_image_size, test_only_the_head_trains),
    kind="bug", bug_tests=("test_scores_shape", "test_any_image_size"),
)
