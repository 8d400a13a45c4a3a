"""Find the bug: a CNN for 32x32 RGB images whose classifier assumes the wrong feature-map size."""
import torch
from torch import nn

from labkit.grading.exercise import Exercise

TASK = """
`ShapesCNN` is meant to classify the generated 32×32 RGB shapes (`labkit.data`) into 10 classes: two conv
blocks (3×3 convolution, ReLU, 2×2 max pooling), then two linear layers. It cannot classify a single batch.

**Find the bug and fix it.** Keep the architecture: two conv blocks with the same channels and poolings, then
two linear layers with 64 hidden units. `ShapesCNN(num_classes=K)` maps images of shape (N, 3, 32, 32) to
class scores of shape (N, K). Hint: write down the tensor shape after every layer. Taught in
01_cnn_image_classification.
"""

STUB = '''
import torch
from torch import nn


class ShapesCNN(nn.Module):
    """Two conv blocks and a two-layer classifier for 32x32 RGB images."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        # 32 channels of 28x28 feature maps reach the classifier
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 28 * 28, 64), nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
'''


def _scores(sub, images: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    torch.manual_seed(0)
    model = sub.ShapesCNN(num_classes=num_classes)
    try:
        return model(images)
    except RuntimeError as err:
        raise AssertionError(f"forward on images of shape {tuple(images.shape)} failed: {err}. Print the "
                             f"shape of the tensor after each layer and compare it with what the next one "
                             f"expects.") from None


def test_forward_shape(sub):
    """a batch of 4 images of shape (3, 32, 32) gives scores of shape (4, 10)"""
    out = _scores(sub, torch.randn(4, 3, 32, 32))
    assert tuple(out.shape) == (4, 10), f"scores have shape {tuple(out.shape)}, expected (4, 10)"


def test_any_batch_size_and_num_classes(sub):
    """batches of 1 and 7 images, 5 classes"""
    for n in (1, 7):
        out = _scores(sub, torch.randn(n, 3, 32, 32), num_classes=5)
        assert tuple(out.shape) == (n, 5), f"scores have shape {tuple(out.shape)}, expected ({n}, 5)"


def test_gradients_reach_every_layer(sub):
    """a backward pass gives every parameter a gradient"""
    torch.manual_seed(0)
    model = sub.ShapesCNN()
    try:
        nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([1, 3])).backward()
    except RuntimeError as err:
        raise AssertionError(f"the forward or backward pass failed: {err}") from None
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reached {missing}"


def test_architecture_kept(sub):
    """still two conv blocks with 2x2 pooling and two linear layers (64 hidden units)"""
    model = sub.ShapesCNN()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    linears = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.LazyLinear))]
    assert [c.out_channels for c in convs] == [16, 32], "keep the two conv layers with 16 and 32 channels"
    assert len(pools) == 2, "keep the two 2x2 max-pooling layers"
    assert len(linears) == 2 and linears[1].in_features == 64, "keep two linear layers with 64 hidden units"


EXERCISE = Exercise(
    name="bug_flatten_size", title="Find the bug · The CNN that cannot take a batch", task=TASK, stub=STUB,
    tests=(test_forward_shape, test_any_batch_size_and_num_classes, test_gradients_reach_every_layer,
           test_architecture_kept),
    kind="bug", bug_tests=("test_forward_shape", "test_any_batch_size_and_num_classes",
                           "test_gradients_reach_every_layer"),
)
