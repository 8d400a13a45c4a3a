"""Hidden tests for bug_flatten_size: two classes, a batch of 16."""
import torch

from labkit.exercises.bug_flatten_size import _scores


def test_hidden_two_classes_batch_of_16(sub):
    """16 images, 2 classes: scores (16, 2), finite"""
    out = _scores(sub, torch.randn(16, 3, 32, 32), num_classes=2)
    assert tuple(out.shape) == (16, 2) and torch.isfinite(out).all(), f"scores of shape {tuple(out.shape)}"


TESTS = (test_hidden_two_classes_batch_of_16,)
