from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def make_loader(X: torch.Tensor, y: torch.Tensor, batch_size: int = 32, shuffle: bool = False,
                seed: int = 0) -> DataLoader:
    """A DataLoader over (X, y); with shuffle=True the order depends only on seed."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None  # own RNG: the global one is not used
    return DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=shuffle, generator=generator)


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    loss_fn=nn.functional.cross_entropy) -> float:
    """One pass in train mode, one optimizer step per batch; returns the mean loss per sample."""
    model.train()  # every epoch: an evaluation in between leaves the model in eval mode
    total, seen = 0.0, 0
    for X, y in loader:
        loss = loss_fn(model(X), y)  # mean over the batch
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)  # back to a sum, so a short last batch weighs what it holds
        seen += len(y)
    return total / seen


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, loss_fn=nn.functional.cross_entropy) -> tuple[float, float]:
    """(mean loss per sample, accuracy) in eval mode, without tracking gradients."""
    model.eval()
    total, correct, seen = 0.0, 0, 0
    for X, y in loader:
        logits = model(X)  # (B, K)
        total += loss_fn(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
        seen += len(y)
    return total / seen, correct / seen


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    epoch: int = 0) -> None:
    """Save {"model": state dict, "optimizer": state dict or None, "epoch": epoch} with torch.save."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict() if optimizer else None,
             "epoch": epoch}
    torch.save(state, path)


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Load a checkpoint safely into model (and optimizer, if given); return the checkpoint dict."""
    # weights_only=True: only tensors and plain containers are unpickled, so no code in the file can run
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["model"])
    if optimizer is not None and ckpt["optimizer"] is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt
