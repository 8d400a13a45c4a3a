"""Find the bug: "normalize to [-1, 1]" that lands somewhere else."""
import torch

from labkit.grading.exercise import Exercise

TASK = """
`to_minus_one_one(images)` should rescale a batch of images (N, C, H, W) linearly so that the smallest value
in the batch becomes exactly -1 and the largest exactly +1 (a tanh-output generator and some pretrained
models expect inputs in that range). Raw pixels may be in 0..255 or 0..1. The current code runs without
errors, yet the output does not span [-1, 1].

**Find the bug and fix it.** Keep it a linear (affine) map of the input: same shape, same order of values.
You may assume the batch is not constant. Work out by hand what range each line produces. Standardization
and min-max normalization are taught in 01_cnn_image_classification (`labkit/preprocess.py`).
"""

STUB = '''
import torch


def to_minus_one_one(images: torch.Tensor) -> torch.Tensor:
    """Rescale images linearly so the batch minimum becomes -1 and the maximum +1."""
    x = (images - images.mean()) / images.std()  # into [0, 1]
    return x * 2 - 1  # [0, 1] -> [-1, 1]
'''


def _batches():
    g = torch.Generator().manual_seed(0)
    yield "uint8-style pixels in 0..255", torch.randint(0, 256, (4, 3, 16, 16), generator=g).float()
    yield "pixels in 0..1", torch.rand(4, 3, 16, 16, generator=g)
    yield "a dim batch in 0.1..0.3", 0.1 + 0.2 * torch.rand(2, 1, 8, 8, generator=g)


def test_minimum_is_minus_one(sub):
    """the smallest output value is -1"""
    for what, X in _batches():
        low = sub.to_minus_one_one(X).min().item()
        assert abs(low + 1) < 1e-5, f"for {what} the smallest output is {low:.4f}, not -1"


def test_maximum_is_plus_one(sub):
    """the largest output value is +1"""
    for what, X in _batches():
        high = sub.to_minus_one_one(X).max().item()
        assert abs(high - 1) < 1e-5, f"for {what} the largest output is {high:.4f}, not +1"


def test_affine_and_order_preserving(sub):
    """same shape; output = a * input + b with a > 0 (values keep their order and relative spacing)"""
    for what, X in _batches():
        out = sub.to_minus_one_one(X)
        assert out.shape == X.shape, f"output shape {tuple(out.shape)} != input shape {tuple(X.shape)}"
        a, b = torch.linalg.lstsq(torch.stack([X.flatten(), torch.ones(X.numel())], 1).double(),
                                  out.flatten().double().unsqueeze(1)).solution.flatten().tolist()
        residual = (out.double() - (a * X.double() + b)).abs().max().item()
        assert a > 0 and residual < 1e-4, f"for {what} the output is not an increasing linear map of the input"


EXERCISE = Exercise(
    name="bug_normalize_range", title="Find the bug · Normalize to [-1, 1]", task=TASK, stub=STUB,
    tests=(test_minimum_is_minus_one, test_maximum_is_plus_one, test_affine_and_order_preserving),
    kind="bug", bug_tests=("test_minimum_is_minus_one", "test_maximum_is_plus_one"),
)
