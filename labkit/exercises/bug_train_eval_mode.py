"""Find the bug: a training loop whose later epochs train in eval mode."""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from labkit.grading.exercise import Exercise

TASK = """
`fit(model, train_loader, val_loader, epochs, lr)` trains a classifier with SGD and cross-entropy, and after
every epoch measures the validation accuracy, which it returns as a list (one float per epoch). It has been
used with models that have dropout and batch norm, and they train worse than they should after the first
epoch, with no error anywhere.

**Find the bug and fix it.** Every training batch must run with the model in training mode (dropout active,
batch-norm statistics updated) and every validation batch in evaluation mode. The grader trains a small
model that records its mode on each call. Dropout and batch norm (and why they behave differently in
`train()` and `eval()`) are taught in 03_regularization_and_optimization.
"""

STUB = '''
import torch
from torch import nn


def fit(model, train_loader, val_loader, epochs, lr=0.1):
    """Train with SGD; return the validation accuracy after each epoch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    model.train()
    for epoch in range(epochs):
        for X, y in train_loader:
            optimizer.zero_grad()
            loss_fn(model(X), y).backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for X, y in val_loader:
                correct += int((model(X).argmax(dim=1) == y).sum())
        history.append(correct / len(val_loader.dataset))
    return history
'''

EPOCHS, TRAIN_BATCHES = 3, 4


class ModeSpy(nn.Module):
    """A small classifier with batch norm and dropout that records its mode on every forward call."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))
        self.calls: list[tuple[str, bool]] = []  # ("train" or "val" batch, self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(("train" if x[0, 0] > 0 else "val", self.training))  # column 0 marks the split
        return self.net(x)


def _fit(sub) -> tuple[ModeSpy, list]:
    torch.manual_seed(0)
    X, y = torch.randn(8 * TRAIN_BATCHES + 10, 4), torch.randint(0, 2, (8 * TRAIN_BATCHES + 10,))
    X[:, 0] = X[:, 0].abs() + 1.0  # training rows: column 0 positive
    X[-10:, 0] = -X[-10:, 0]       # validation rows: column 0 negative
    train = DataLoader(TensorDataset(X[:-10], y[:-10]), batch_size=8, shuffle=True)
    val = DataLoader(TensorDataset(X[-10:], y[-10:]), batch_size=5)
    model = ModeSpy()
    return model, sub.fit(model, train, val, epochs=EPOCHS, lr=0.1)


def test_every_training_batch_in_train_mode(sub):
    """over 3 epochs, each of the 12 training forward passes runs with model.training == True"""
    model, _ = _fit(sub)
    modes = [training for split, training in model.calls if split == "train"]
    assert len(modes) == EPOCHS * TRAIN_BATCHES, f"expected {EPOCHS * TRAIN_BATCHES} training batches, saw {len(modes)}"
    for epoch in range(EPOCHS):
        chunk = modes[epoch * TRAIN_BATCHES:(epoch + 1) * TRAIN_BATCHES]
        assert all(chunk), (f"epoch {epoch + 1}: {chunk.count(False)} of {TRAIN_BATCHES} training batches ran "
                            f"in eval mode, so dropout was off and batch norm did not learn from them")


def test_batch_norm_learns_from_every_training_batch(sub):
    """batch norm's running statistics are updated once per training batch: 12 updates"""
    model, _ = _fit(sub)
    seen = int(model.net[1].num_batches_tracked)
    assert seen == EPOCHS * TRAIN_BATCHES, (f"batch norm updated its running statistics {seen} times; "
                                            f"training saw {EPOCHS * TRAIN_BATCHES} batches")


def test_validation_in_eval_mode(sub):
    """every validation forward pass runs with model.training == False"""
    model, _ = _fit(sub)
    modes = [training for split, training in model.calls if split == "val"]
    assert modes and not any(modes), f"{sum(modes)} of {len(modes)} validation batches ran in training mode"


def test_one_accuracy_per_epoch(sub):
    """returns a list of 3 accuracies in [0, 1]"""
    _, history = _fit(sub)
    assert len(history) == EPOCHS and all(0.0 <= a <= 1.0 for a in history), f"got {history!r}"


EXERCISE = Exercise(
    name="bug_train_eval_mode", title="Find the bug · Training in eval mode", task=TASK, stub=STUB,
    tests=(test_every_training_batch_in_train_mode, test_batch_norm_learns_from_every_training_batch,
           test_validation_in_eval_mode, test_one_accuracy_per_epoch),
    kind="bug", bug_tests=("test_every_training_batch_in_train_mode",
                           "test_batch_norm_learns_from_every_training_batch"),
)
