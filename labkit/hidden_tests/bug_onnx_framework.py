"""Hidden tests for bug_onnx_framework: the parity gate sees a small drift, at another batch size."""
import torch

from labkit.exercises.bug_onnx_framework import _batch, _exported, _model


def test_hidden_gate_catches_a_small_drift(sub):
    """weights nudged by 0.01 after export: max_abs_diff on a batch of 5 exceeds 1e-3"""
    drifted = _model(0)
    with torch.no_grad():
        drifted[1].weight.add_(0.01)
    diff = float(sub.max_abs_diff(drifted, sub.load(_exported(sub), threads=1), _batch(5, seed=3)))
    assert diff > 1e-3, f"the weights moved by 0.01 after export, yet max_abs_diff is {diff}"


TESTS = (test_hidden_gate_catches_a_small_drift,)
