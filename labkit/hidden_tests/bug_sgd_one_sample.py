"""Hidden tests for bug_sgd_one_sample: 7 samples over 3 epochs."""
import torch

from labkit.exercises.bug_sgd_one_sample import BatchSpy


def test_hidden_seven_samples_three_epochs(sub):
    """7 samples, 3 epochs: 21 steps of one sample each"""
    torch.manual_seed(2)
    X = torch.cat([torch.arange(7, dtype=torch.float32).unsqueeze(1), torch.randn(7, 2)], dim=1)  # (7, 3)
    model = BatchSpy()
    steps = sub.train_sgd(model, X, torch.randint(0, 2, (7,)), epochs=3, lr=0.01, seed=4)
    assert steps == 21 and [len(b) for b in model.batches] == [1] * 21, (
        f"reported {steps} steps, batch sizes {[len(b) for b in model.batches]}: expected 21 single samples")


TESTS = (test_hidden_seven_samples_three_epochs,)
