"""Hidden tests for bug_train_eval_mode: a one-epoch run and a five-epoch run."""
import torch
from torch.utils.data import DataLoader, TensorDataset

from labkit.exercises.bug_train_eval_mode import ModeSpy


def test_hidden_five_epochs_all_train_batches_in_train_mode(sub):
    """5 epochs of 2 training batches: all 10 in train mode, every validation batch in eval mode"""
    torch.manual_seed(1)
    X, y = torch.randn(16 + 6, 4), torch.randint(0, 2, (22,))
    X[:, 0] = X[:, 0].abs() + 1.0
    X[-6:, 0] = -X[-6:, 0]
    model = ModeSpy()
    sub.fit(model, DataLoader(TensorDataset(X[:-6], y[:-6]), batch_size=8),
            DataLoader(TensorDataset(X[-6:], y[-6:]), batch_size=6), epochs=5, lr=0.05)
    train = [training for split, training in model.calls if split == "train"]
    val = [training for split, training in model.calls if split == "val"]
    assert len(train) == 10 and all(train), f"training batches in train mode: {train}"
    assert len(val) == 5 and not any(val), f"validation batches in train mode: {val}"


TESTS = (test_hidden_five_epochs_all_train_batches_in_train_mode,)
