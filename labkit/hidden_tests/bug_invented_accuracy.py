"""Hidden tests for bug_invented_accuracy: a model right on 3 of 8 samples."""
import torch
from torch import nn

from labkit.exercises.bug_invented_accuracy import _report


def test_hidden_three_of_eight(sub):
    """one-hot scores right on 3 of 8 samples: accuracy 0.375 and n 8"""
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    guesses = torch.tensor([0, 1, 2, 1, 2, 0, 2, 0])  # the first 3 right
    report, _ = _report(sub, nn.Identity(), nn.functional.one_hot(guesses, 3).float(), y)
    assert abs(report["accuracy"] - 0.375) < 1e-9 and report["n"] == 8, f"got {report!r}, expected 0.375 of 8"


TESTS = (test_hidden_three_of_eight,)
