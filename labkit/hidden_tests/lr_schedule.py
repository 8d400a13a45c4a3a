"""Hidden tests for lr_schedule: gamma 1, step sizes beyond the run, very long runs."""
import math

from labkit.exercises.lr_schedule import _lrs_per_epoch, _optimizer, _torch_lrs


def test_hidden_edge_settings_match_torch(sub):
    """gamma=1 (constant), step_size longer than the run, and 2,000 epochs of step_size=1"""
    for lrs, step_size, gamma, epochs in [([0.3, 0.01], 5, 1.0, 40), ([0.2], 100, 0.1, 50), ([1.0], 1, 0.999, 2000)]:
        want = _torch_lrs(lrs, step_size, gamma, epochs)
        optimizer = _optimizer(lrs)
        got = _lrs_per_epoch(optimizer, sub.StepSchedule(optimizer, step_size, gamma), epochs)
        for epoch in range(epochs):
            assert all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(got[epoch], want[epoch])), (
                f"step_size={step_size}, gamma={gamma}: epoch {epoch} has {got[epoch]}, StepLR {want[epoch]}")
            assert math.isclose(sub.step_lr(lrs[0], epoch, step_size, gamma), want[epoch][0], rel_tol=1e-9)


TESTS = (test_hidden_edge_settings_match_torch,)
