import torch
from torch import nn


def fit(model, train_loader, val_loader, epochs, lr=0.1):
    """Train with SGD; return the validation accuracy after each epoch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    for epoch in range(epochs):
        model.train()  # every epoch: validation below switched the model to eval mode
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
