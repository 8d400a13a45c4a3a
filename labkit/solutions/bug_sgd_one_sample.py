import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def train_sgd(model, X, y, epochs=1, lr=0.01, seed=0):
    """Stochastic gradient descent: each step uses the gradient of ONE randomly drawn sample.

    Every epoch visits each sample once, in a new random order. Returns the number of optimizer steps.
    """
    generator = torch.Generator().manual_seed(seed)
    # batch_size=1 is what makes it stochastic GD; 32 would be mini-batch GD (N/32 steps per epoch)
    loader = DataLoader(TensorDataset(X, y), batch_size=1, shuffle=True, generator=generator)
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
