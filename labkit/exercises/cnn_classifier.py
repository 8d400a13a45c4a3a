"""Exercise: build and train a CNN for the 8x8 digits; graded on held-out test accuracy within the time limit."""
import time

import torch
from torch import nn

from labkit.grading.exercise import Exercise

MIN_TEST_ACC = 0.93  # small CNNs reach 0.94-0.985 in 5-8 epochs (measured; the reference gets 0.97)

TASK = f"""
Build and train a convolutional classifier for scikit-learn's 8x8 digits (`labkit.data.load_digits_split()`):

- `build_model()` → an `nn.Module` with at least one `nn.Conv2d`, mapping images `(N, 1, 8, 8)` (floats in [0, 1])
  to logits `(N, 10)`;
- `train(model, X, y)` → the trained model, given the training split's images `X (N, 1, 8, 8)` and labels
  `y (N,)` (1257 images). Choose the optimizer, learning rate, batch size and epochs yourself.

Graded: the output shape, that the model is a CNN, and accuracy **>= {MIN_TEST_ACC}** on the held-out test split
(270 images) after your `train` ran on the training split (seeded with `torch.manual_seed(0)`). The whole grade
runs in one process limited to the time below, on one CPU thread, and importing PyTorch alone takes a few seconds
of it: keep training to a few seconds (a small net for 5-10 epochs of mini-batches is plenty; 1000 epochs is
not). Taught in notebook 01 §2 "The model" and §3 "Training step by step"
(notebooks/01_cnn_image_classification.ipynb).
"""

STUB = '''
import torch
from torch import nn


def build_model() -> nn.Module:
    """A CNN mapping (N, 1, 8, 8) digit images to (N, 10) logits."""
    raise NotImplementedError("build_model")


def train(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """Train model on images X (N, 1, 8, 8) and labels y (N,); return the trained model."""
    raise NotImplementedError("train")
'''

_trained: dict[int, tuple] = {}  # one training run per submission, shared by the tests that need it


def _train_on_digits(sub) -> tuple[nn.Module, float, float]:
    """(trained model, test accuracy, training seconds), computed once."""
    if id(sub) not in _trained:
        from labkit.data import load_digits_split

        # 2 threads on a busy 2-core machine ran these small batches ~10x slower than 1 thread (measured)
        torch.set_num_threads(1)
        split = load_digits_split(seed=0)
        torch.manual_seed(0)
        start = time.perf_counter()
        model = sub.train(sub.build_model(), split.X_train, split.y_train)
        seconds = time.perf_counter() - start
        assert isinstance(model, nn.Module), f"train must return the trained model, got {type(model).__name__}"
        model.eval()
        with torch.no_grad():
            acc = (model(split.X_test).argmax(dim=1) == split.y_test).float().mean().item()
        _trained[id(sub)] = model, acc, seconds
    return _trained[id(sub)]


def test_output_shape(sub):
    """build_model() maps (N, 1, 8, 8) images to (N, 10) logits"""
    torch.manual_seed(0)
    model = sub.build_model()
    assert isinstance(model, nn.Module), f"build_model must return an nn.Module, got {type(model).__name__}"
    for n in (1, 5):
        out = model(torch.rand(n, 1, 8, 8))
        assert tuple(out.shape) == (n, 10), (f"for {n} images of shape (1, 8, 8) the model returned "
                                             f"{tuple(out.shape)}, expected ({n}, 10): one logit per class")


def test_is_a_cnn(sub):
    """the model contains at least one nn.Conv2d"""
    model = sub.build_model()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs, "no nn.Conv2d in the model: this exercise asks for a convolutional network"


def test_test_accuracy(sub):
    """accuracy >= 0.93 (MIN_TEST_ACC) on the held-out test digits after train() on the training split"""
    model, acc, seconds = _train_on_digits(sub)
    assert acc >= MIN_TEST_ACC, (f"test accuracy {acc:.3f} < {MIN_TEST_ACC} (training took {seconds:.1f} s): train "
                                 "longer or with a higher learning rate (Adam 3e-3, batches of 32, ~8 epochs), and "
                                 "check the loss falls")


EXERCISE = Exercise(
    name="cnn_classifier", title="Exercise · A CNN digit classifier", task=TASK, stub=STUB,
    tests=(test_output_shape, test_is_a_cnn, test_test_accuracy),
    time_limit_s=45.0,
    protected_modules=('labkit.models',),
)
