"""Hidden tests for cnn_classifier: every digit is learned, and a batch of one works."""
import torch

from labkit.exercises.cnn_classifier import _train_on_digits


def test_hidden_every_digit_learned(sub):
    """no digit class is left behind: each one's test recall is at least 0.7"""
    from labkit.data import load_digits_split

    model, _, _ = _train_on_digits(sub)
    split = load_digits_split(seed=0)
    with torch.no_grad():
        predicted = model(split.X_test).argmax(dim=1)
        one = model(split.X_test[:1])
    assert tuple(one.shape) == (1, 10), f"a batch of one gave shape {tuple(one.shape)}"
    recalls = [(predicted[split.y_test == c] == c).float().mean().item() for c in range(10)]
    worst = min(range(10), key=lambda c: recalls[c])
    assert recalls[worst] >= 0.7, f"digit {worst} is recognised only {recalls[worst]:.0%} of the time"


TESTS = (test_hidden_every_digit_learned,)
