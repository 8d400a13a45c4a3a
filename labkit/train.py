"""Training and evaluation loops, early stopping, step LR schedule, checkpoints."""
from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from labkit.data import Split, make_loader, minibatches
from labkit.metrics import accuracy


@dataclass(frozen=True)
class TrainConfig:
    """Everything `fit` needs; defaults suit the course's small models on 2 CPU cores."""
    epochs: int = 10
    lr: float = 1e-3
    optimizer: str = "adam"        # "sgd", "momentum" (SGD with momentum 0.9) or "adam"
    weight_decay: float = 0.0      # L2 penalty, applied by the optimizer
    l1: float = 0.0                # L1 penalty on weights, added to the loss
    step_size: int = 0             # StepLR: multiply lr by gamma every step_size epochs; 0 = constant
    gamma: float = 0.5
    patience: int = 0              # early stopping on val loss; 0 = off
    seed: int = 0
    progress: bool = True          # tqdm bar over epochs


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so a run repeats. Taught in 00_welcome."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def step_lr(initial_lr: float, epoch: int, step_size: int, gamma: float) -> float:
    """The step schedule in closed form: decays every step_size epochs and never resets. Taught in 03_regularization_and_optimization."""
    if step_size < 1:
        raise ValueError(f"step_size must be >= 1; got {step_size}")
    return initial_lr * gamma ** (epoch // step_size)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD, SGD with momentum, or Adam, as named in config. Taught in 03_regularization_and_optimization."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (all frozen?)")
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "momentum":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"optimizer must be 'sgd', 'momentum' or 'adam'; got {config.optimizer!r}")


class EarlyStopping:
    """Stop when val loss has not improved by min_delta for `patience` epochs; remembers the best weights."""

    def __init__(self, patience: int, min_delta: float = 0.0):
        self.patience, self.min_delta = patience, min_delta
        self.best_loss, self.best_epoch, self.best_state = float("inf"), -1, None
        self.bad_epochs = 0

    def step(self, val_loss: float, epoch: int, model: nn.Module) -> bool:
        """Record this epoch; True means stop now."""
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |w| over weight matrices and kernels (biases and norms excluded)."""
    return sum(p.abs().sum() for name, p in model.named_parameters() if p.dim() > 1)


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    loss_fn: Callable = nn.functional.cross_entropy, l1: float = 0.0) -> tuple[float, float]:
    """One pass in train mode; returns (mean loss, accuracy) on the batches as trained."""
    model.train()  # every epoch: evaluate() below switches to eval mode
    device, total_loss, correct, seen = _device_of(model), 0.0, 0, 0
    for X, y in loader:
        X, y = X.to(device), y.to(device)
        logits = model(X)
        loss = loss_fn(logits, y)
        if l1:
            loss = loss + l1 * l1_penalty(model)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(dim=1) == y).sum().item()
        seen += len(y)
    if seen == 0:
        raise ValueError("the training loader yielded no samples")
    return total_loss / seen, correct / seen


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader,
             loss_fn: Callable = nn.functional.cross_entropy) -> tuple[float, float]:
    """Mean loss and accuracy in eval mode (dropout off, batch norm uses running stats)."""
    model.eval()
    device, total_loss, correct, seen = _device_of(model), 0.0, 0, 0
    for X, y in loader:
        X, y = X.to(device), y.to(device)
        logits = model(X)
        total_loss += loss_fn(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
        seen += len(y)
    if seen == 0:
        raise ValueError("the evaluation loader yielded no samples")
    return total_loss / seen, correct / seen


@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels (N,) and class probabilities (N, K) for a tensor of inputs, in eval mode."""
    if len(X) == 0:
        raise ValueError("predict() got an empty input")
    model.eval()
    device = _device_of(model)
    probs = torch.cat([model(xb.to(device)).softmax(dim=1).cpu() for (xb,) in minibatches(X, batch_size=batch_size)])
    return probs.argmax(dim=1), probs


def _eval_mode(model: nn.Module) -> None:
    """model.eval(), except for exported graphs (even compiled ones), which refuse it: they are traced in eval mode."""
    try:
        model.eval()
    except NotImplementedError:
        pass


@torch.no_grad()
def model_accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of a model on (X, y), batch by batch in eval mode; eager, quantized or exported models."""
    if len(X) == 0 or len(X) != len(y):
        raise ValueError(f"X and y must be non-empty and equally long; got {len(X)} and {len(y)}")
    _eval_mode(model)
    return accuracy(y, torch.cat([model(xb).argmax(dim=1) for (xb,) in minibatches(X, batch_size=batch_size)]))


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, config: TrainConfig,
        loss_fn: Callable = nn.functional.cross_entropy) -> list[dict]:
    """Train with optional L1/L2, step LR and early stopping; returns one row of metrics per epoch.

    With early stopping the model ends holding its best-val-loss weights. Taught in 01_cnn_image_classification.
    """
    set_seed(config.seed)
    optimizer = make_optimizer(model, config)
    scheduler = (torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.gamma)
                 if config.step_size else None)
    stopper = EarlyStopping(config.patience) if config.patience else None
    history = []
    bar = tqdm(range(config.epochs), desc=type(model).__name__, disable=not config.progress, leave=False)
    for epoch in bar:
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_acc = train_one_epoch(model, train_loader, optimizer, loss_fn, config.l1)
        val_loss, val_acc = evaluate(model, val_loader, loss_fn)
        history.append(dict(epoch=epoch, lr=lr, train_loss=train_loss, train_acc=train_acc,
                            val_loss=val_loss, val_acc=val_acc, seconds=time.perf_counter() - start))
        bar.set_postfix(val_acc=f"{val_acc:.3f}")
        if scheduler:
            scheduler.step()
        if stopper and stopper.step(val_loss, epoch, model):
            break
    if stopper and stopper.best_state is not None:
        model.load_state_dict(stopper.best_state)
    return history


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    epoch: int = 0, config: TrainConfig | None = None) -> Path:
    """Save weights (plus optimizer state, epoch, config) as plain tensors and dicts. Taught in 01_cnn_image_classification."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"architecture": type(model).__name__, "model": model.state_dict(),
                "optimizer": optimizer.state_dict() if optimizer else None,
                "epoch": epoch, "config": asdict(config) if config else None}, path)
    return path


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded into the given model."""


def load_checkpoint(path: str | Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Load with weights_only=True (no arbitrary code runs) and check it fits the model; returns the checkpoint."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a labkit checkpoint (no 'model' entry)")
    _check_fits(ckpt, model, path)
    model.load_state_dict(ckpt["model"])
    if optimizer is not None and ckpt.get("optimizer"):
        optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt


def _check_fits(ckpt: dict, model: nn.Module, path: Path) -> None:
    """Name the architecture, missing/unexpected keys and shape mismatches instead of a raw traceback."""
    expected, saved = model.state_dict(), ckpt["model"]
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    shapes = [f"{k}: checkpoint {tuple(saved[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in saved and saved[k].shape != v.shape]
    if missing or unexpected or shapes:
        problems = [f"missing keys {missing[:5]}" if missing else "",
                    f"unexpected keys {unexpected[:5]}" if unexpected else "",
                    f"shape mismatches {shapes[:5]}" if shapes else ""]
        raise CheckpointError(
            f"{path} was saved from a {ckpt.get('architecture', '?')} that does not match this "
            f"{type(model).__name__}: " + "; ".join(p for p in problems if p))


def fit_seq2seq(model: nn.Module, src: torch.Tensor, tgt: torch.Tensor, epochs: int = 10, lr: float = 3e-3,
                batch_size: int = 64, seed: int = 0, progress: bool = True) -> list[float]:
    """Teacher-forced training of an encoder-decoder on (src, tgt) id tensors; returns mean loss per epoch.

    Taught in 02_rnn_sequence_classification.
    """
    if len(src) == 0 or len(src) != len(tgt):
        raise ValueError(f"src and tgt must be non-empty and equally long; got {len(src)} and {len(tgt)}")
    set_seed(seed)
    device = _device_of(model)
    src, tgt = src.to(device), tgt.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in tqdm(range(epochs), desc="Seq2Seq", disable=not progress, leave=False):
        model.train()
        total = 0.0
        for src_b, tgt_b in minibatches(src, tgt, batch_size=batch_size, shuffle=True):
            logits = model(src_b, tgt_b)  # (B, T, V)
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), tgt_b.flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(src_b)
        losses.append(total / len(src))
    return losses


def summarize(history: list[dict]) -> dict:
    """One row per run: final and best accuracies, the train/val gap, epochs and seconds.

    train_acc is what fit() logged while training (dropout on), so for dropout models the gap understates
    overfitting; re-evaluate the training set with evaluate() for an eval-mode gap. Taught in
    03_regularization_and_optimization.
    """
    if not history:
        raise ValueError("empty history: did fit() run any epoch?")
    last, best = history[-1], max(history, key=lambda h: h["val_acc"])
    return dict(epochs=len(history), train_acc=last["train_acc"], val_acc=last["val_acc"],
                best_val_acc=best["val_acc"], gap=last["train_acc"] - last["val_acc"],
                seconds=sum(h["seconds"] for h in history))


def fit_split(model: nn.Module, split: Split, config: TrainConfig, batch_size: int = 64,
              val_batch_size: int = 512) -> list[dict]:
    """`fit` on a data.Split: its training part shuffled (seeded with config.seed), its validation part for val.

    Taught in 03_regularization_and_optimization, 04_transfer_learning and 06_model_compression.
    """
    train_loader = make_loader(split.X_train, split.y_train, batch_size, shuffle=True, seed=config.seed)
    val_loader = make_loader(split.X_val, split.y_val, val_batch_size)
    return fit(model, train_loader, val_loader, config)


def fit_tensors(model: nn.Module, X: torch.Tensor, y: torch.Tensor, epochs: int, lr: float = 3e-3,
                batch_size: int = 64, seed: int = 0) -> nn.Module:
    """Adam with cross-entropy over seeded, shuffled minibatches of in-memory tensors; the model, in eval mode."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for xb, yb in minibatches(X, y, batch_size=batch_size, shuffle=True, generator=gen):
            loss = nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()
