import copy

import numpy as np
import torch
from torch import nn


class ReplayBuffer:
    def __init__(self, capacity, seed=0):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1; got {capacity}")
        self.capacity, self.seen = capacity, 0
        self.rng = np.random.default_rng(seed)
        self.X, self.y = [], []

    def __len__(self):
        return len(self.y)

    def add(self, X, y):
        for x_i, y_i in zip(X, y):
            if len(self.y) < self.capacity:
                self.X.append(x_i.clone())
                self.y.append(int(y_i))
            else:
                j = int(self.rng.integers(0, self.seen + 1))   # keep row n with probability capacity / (n + 1)
                if j < self.capacity:
                    self.X[j], self.y[j] = x_i.clone(), int(y_i)
            self.seen += 1

    def sample(self, n):
        idx = self.rng.integers(0, len(self.y), n)
        return torch.stack([self.X[i] for i in idx]), torch.tensor([self.y[i] for i in idx])


class OnlineLearner:
    def __init__(self, model, lr=0.05, capacity=300, replay=32, seed=0):
        self.model = copy.deepcopy(model).eval()      # the deployed model stays as it was (rollback target)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)
        self.buffer, self.replay = ReplayBuffer(capacity, seed), replay

    @torch.no_grad()
    def predict(self, X):
        self.model.eval()
        return self.model(X).argmax(dim=1)

    def update(self, X, y):
        if len(self.buffer):
            X_old, y_old = self.buffer.sample(self.replay)
            X_step, y_step = torch.cat([X, X_old]), torch.cat([y, y_old])
        else:
            X_step, y_step = X, y
        self.model.train()
        loss = nn.functional.cross_entropy(self.model(X_step), y_step)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.model.eval()
        self.buffer.add(X, y)


def prequential(learner, X, y, batch_size=16):
    correct = np.zeros(len(y), dtype=bool)
    for start in range(0, len(y), batch_size):
        xb, yb = X[start:start + batch_size], y[start:start + batch_size]
        correct[start:start + len(yb)] = (learner.predict(xb) == yb).numpy()
        learner.update(xb, yb)
    return correct
