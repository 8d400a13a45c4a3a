"""Incremental learners on a stream, and prequential (test-then-train) evaluation.

Three ways to live with a stream: a static model (trained once, never updated), a naive incremental learner
(one SGD step on each arriving batch, nothing else) and a replay learner (each step also rehearses a random
sample of what it saw earlier, kept in a fixed-size reservoir). Prequential evaluation predicts every batch
before it trains on it, so each label is used once to test and then to learn. Taught in 14_online_learning.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch
from torch import nn

from labkit.models import MLP
from labkit.train import fit_tensors


class Learner(Protocol):
    """What a stream needs from a learner: predict labels, then learn from the same batch."""
    name: str

    def predict(self, X: torch.Tensor) -> torch.Tensor: ...

    def update(self, X: torch.Tensor, y: torch.Tensor) -> None: ...


def pretrain(X: torch.Tensor, y: torch.Tensor, epochs: int = 20, lr: float = 3e-3, seed: int = 0) -> nn.Module:
    """The deployed model: an MLP (64 -> 64 -> 10) trained offline on the old distribution with Adam."""
    torch.manual_seed(seed)
    model = MLP(X[0].numel(), hidden=(64,), num_classes=int(y.max()) + 1)
    return fit_tensors(model, X, y, epochs, lr=lr, batch_size=32, seed=seed)


class StaticLearner:
    """The model as deployed: predicts, never learns."""

    def __init__(self, model: nn.Module, name: str = "static"):
        self.model, self.name = copy.deepcopy(model).eval(), name

    @torch.no_grad()
    def predict(self, X: torch.Tensor) -> torch.Tensor:
        return self.model(X).argmax(dim=1)

    def update(self, X: torch.Tensor, y: torch.Tensor) -> None:
        pass


class NaiveLearner(StaticLearner):
    """One SGD step on every arriving batch, and nothing else: fast to adapt, fast to forget."""

    def __init__(self, model: nn.Module, lr: float = 0.05, name: str = "naive"):
        super().__init__(model, name)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)
        self.steps = 0

    def _step(self, X: torch.Tensor, y: torch.Tensor) -> None:
        self.model.train()
        loss = nn.functional.cross_entropy(self.model(X), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.model.eval()
        self.steps += 1

    def update(self, X: torch.Tensor, y: torch.Tensor) -> None:
        self._step(X, y)


class ReservoirBuffer:
    """A uniform sample of everything offered so far, at most `capacity` rows (reservoir sampling)."""

    def __init__(self, capacity: int, seed: int = 0):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1; got {capacity}")
        self.capacity, self.seen = capacity, 0
        self._rng = np.random.default_rng(seed)
        self.X: torch.Tensor | None = None
        self.y: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.y is None else len(self.y)

    def add(self, X: torch.Tensor, y: torch.Tensor) -> None:
        """Offer each row; row number n (0-based) is kept with probability capacity / (n + 1)."""
        for x_i, y_i in zip(X, y):
            if self.X is None:
                self.X, self.y = x_i[None].clone(), y_i[None].clone()
            elif len(self) < self.capacity:
                self.X, self.y = torch.cat([self.X, x_i[None]]), torch.cat([self.y, y_i[None]])
            else:
                j = int(self._rng.integers(0, self.seen + 1))
                if j < self.capacity:
                    self.X[j], self.y[j] = x_i, y_i
            self.seen += 1

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n rows drawn with replacement (empty tensors while the buffer is empty)."""
        if self.X is None:
            raise ValueError("the buffer is empty")
        idx = torch.from_numpy(self._rng.integers(0, len(self), n))
        return self.X[idx], self.y[idx]


class ReplayLearner(NaiveLearner):
    """Each step trains on the new batch plus `replay` rows rehearsed from a reservoir of the past."""

    def __init__(self, model: nn.Module, lr: float = 0.05, capacity: int = 300, replay: int = 32,
                 seed: int = 0, name: str = "replay"):
        super().__init__(model, lr, name)
        self.buffer, self.replay = ReservoirBuffer(capacity, seed), replay

    def update(self, X: torch.Tensor, y: torch.Tensor) -> None:
        if len(self.buffer):
            X_old, y_old = self.buffer.sample(self.replay)
            self._step(torch.cat([X, X_old]), torch.cat([y, y_old]))
        else:
            self._step(X, y)
        self.buffer.add(X, y)


@dataclass
class PrequentialResult:
    """Per-sample correctness in arrival order, plus probes of held-out accuracy taken along the way."""
    name: str
    correct: np.ndarray                                  # (N,) bool: predicted right before training on it
    probes: list[dict] = field(default_factory=list)     # {"seen": samples so far, **probe(learner)}

    def accuracy(self, start: int = 0, stop: int | None = None) -> float:
        """Prequential accuracy over samples [start, stop)."""
        return float(self.correct[start:stop].mean())

    def rolling(self, window: int = 100) -> np.ndarray:
        """Trailing-window prequential accuracy after each sample (shorter windows at the start)."""
        c = np.cumsum(self.correct, dtype=float)
        n = np.arange(1, len(c) + 1)
        lagged = np.concatenate([np.zeros(window), c[:-window]]) if len(c) > window else np.zeros(len(c))
        return (c - lagged[:len(c)]) / np.minimum(n, window)


def prequential(learner: Learner, X: torch.Tensor, y: torch.Tensor, batch_size: int = 16,
                probe: Callable[[Learner], dict] | None = None, probe_every: int = 0) -> PrequentialResult:
    """Test-then-train over the stream in arrival order; call probe(learner) every probe_every samples."""
    correct = np.zeros(len(y), dtype=bool)
    result = PrequentialResult(learner.name, correct)
    for start in range(0, len(y), batch_size):
        xb, yb = X[start:start + batch_size], y[start:start + batch_size]
        correct[start:start + len(yb)] = (learner.predict(xb) == yb).numpy()
        learner.update(xb, yb)
        seen = start + len(yb)
        if probe and probe_every and (seen % probe_every < batch_size or seen == len(y)):
            result.probes.append({"seen": seen, **probe(learner)})
    return result


def accuracy_of(learner: Learner, X: torch.Tensor, y: torch.Tensor) -> float:
    """Held-out accuracy of the learner's current model."""
    return float((learner.predict(X) == y).float().mean())
