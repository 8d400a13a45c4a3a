"""Find the bug: "stochastic gradient descent, one sample per step" that steps on batches."""
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from labkit.grading.exercise import Exercise

TASK = """
`train_sgd(model, X, y, epochs, lr, seed)` is the course's demonstration of **stochastic gradient descent**
in its textbook form, to be compared with full-batch and mini-batch gradient descent: every optimizer step
uses the gradient of the loss on **one** randomly drawn sample, every epoch visits each sample once in a
fresh random order, and the function returns the number of optimizer steps it took. The comparison plots
look suspiciously like mini-batch ones.

**Find the bug and fix it.** The docstring is the contract: make the code honour it, so that an epoch over
N samples takes N steps. Gradient descent variants (batch, stochastic, mini-batch) are taught in
03_regularization_and_optimization.
"""

STUB = '''
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def train_sgd(model, X, y, epochs=1, lr=0.01, seed=0):
    """Stochastic gradient descent: each step uses the gradient of ONE randomly drawn sample.

    Every epoch visits each sample once, in a new random order. Returns the number of optimizer steps.
    """
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True, generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    steps = 0
    for _ in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            loss_fn(model(xb), yb).backward()
            optimizer.step()
            steps += 1
    return steps
'''

N, EPOCHS = 40, 2


class BatchSpy(nn.Module):
    """A linear classifier that records which sample ids (column 0 of its input) each call sees."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.batches: list[list[int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            self.batches.append(x[:, 0].round().long().tolist())
        return self.linear(x)


def _train(sub) -> tuple[BatchSpy, int, int]:
    """Run train_sgd; return the spy, the steps it reported and the optimizer steps actually taken."""
    torch.manual_seed(0)
    X = torch.cat([torch.arange(N, dtype=torch.float32).unsqueeze(1), torch.randn(N, 2)], dim=1)  # (N, 3)
    y = torch.randint(0, 2, (N,))
    taken = [0]
    handle = register_optimizer_step_post_hook(lambda optimizer, args, kwargs: taken.__setitem__(0, taken[0] + 1))
    try:
        model = BatchSpy()
        reported = sub.train_sgd(model, X, y, epochs=EPOCHS, lr=0.01, seed=0)
    finally:
        handle.remove()
    return model, reported, taken[0]


def test_one_step_per_sample(sub):
    """2 epochs over 40 samples take 80 optimizer steps, and the function reports 80"""
    _, reported, taken = _train(sub)
    assert taken == N * EPOCHS, (f"{EPOCHS} epochs over {N} samples took {taken} optimizer steps; stochastic "
                                 f"gradient descent as documented takes one step per sample")
    assert reported == taken, f"train_sgd reported {reported} steps but took {taken}"


def test_each_gradient_comes_from_one_sample(sub):
    """every training forward pass sees exactly one sample"""
    model, _, _ = _train(sub)
    sizes = sorted({len(b) for b in model.batches})
    assert sizes == [1], f"training forward passes saw batches of {sizes} samples; the docstring promises one"


def test_each_epoch_visits_every_sample_once_in_random_order(sub):
    """per epoch: every sample exactly once, not in the stored order, and a different order each epoch"""
    model, _, _ = _train(sub)
    seen = [i for batch in model.batches for i in batch]
    assert len(seen) == N * EPOCHS, f"training saw {len(seen)} samples in {EPOCHS} epochs over {N}"
    epochs = [seen[e * N:(e + 1) * N] for e in range(EPOCHS)]
    for e, order in enumerate(epochs):
        assert sorted(order) == list(range(N)), f"epoch {e + 1} did not visit each sample exactly once"
        assert order != list(range(N)), f"epoch {e + 1} visited the samples in stored order, not at random"
    assert epochs[0] != epochs[1], "both epochs used the same order"


EXERCISE = Exercise(
    name="bug_sgd_one_sample", title="Find the bug · Stochastic gradient descent in batches of 32", task=TASK,
    stub=STUB, tests=(test_one_step_per_sample, test_each_gradient_comes_from_one_sample,
                      test_each_epoch_visits_every_sample_once_in_random_order),
    kind="bug", bug_tests=("test_one_step_per_sample", "test_each_gradient_comes_from_one_sample"),
)
