"""Hidden tests for distill_student: temperature 1, a batch of one, a teacher with requires_grad."""
import torch

from labkit.exercises.distill_student import _logits, _reference_loss


def test_hidden_other_shapes_and_temperatures(sub):
    """a batch of one row and of 64 rows, T in (1, 3, 10), alpha in (0.25, 0.75)"""
    for n, seed in ((1, 5), (64, 6)):
        s, t, y = _logits(n, seed)
        for T in (1.0, 3.0, 10.0):
            for alpha in (0.25, 0.75):
                got, want = float(sub.distillation_loss(s, t, y, T, alpha)), float(_reference_loss(s, t, y, T, alpha))
                assert abs(got - want) < 1e-4 * max(1.0, abs(want)), f"n={n}, T={T}, alpha={alpha}: {got} != {want}"


def test_hidden_loss_is_a_scalar_tensor(sub):
    """the loss is a 0-d tensor, so .backward() works on it directly"""
    s, t, y = _logits(4, 9)
    loss = sub.distillation_loss(s.clone().requires_grad_(), t, y, 2.0, 0.5)
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0, f"expected a 0-d tensor, got {loss!r}"
    loss.backward()


TESTS = (test_hidden_other_shapes_and_temperatures, test_hidden_loss_is_a_scalar_tensor)
