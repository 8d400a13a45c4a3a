"""DP-SGD with Opacus next to ordinary training, on a small MLP that sees few digits for many epochs.

The non-private model is meant to overfit (200 digits, hundreds of steps): that is what lets a
membership-inference attack (labkit.secure.membership) tell its training rows apart. Taught in 15_security_and_privacy.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from labkit.data import Split, make_loader
from labkit.models import MLP


@dataclass(frozen=True)
class PrivacyConfig:
    """The same data and MLP for both models; each trains with the recipe that suits it."""
    n_members: int = 200          # training rows (20 per digit): few, so the non-private model memorises them
    hidden: tuple[int, ...] = (256,)
    epochs: int = 200             # non-private: long training on few rows (1,600 SGD steps) drives the loss to ~0
    batch_size: int = 25
    lr: float = 0.05              # SGD with momentum 0.9 for both
    # DP-SGD adds noise of std noise_multiplier * max_grad_norm / batch to the mean gradient: larger batches,
    # fewer steps and a larger rate suit it (on this task 15 epochs of 100 beat 30 of 50 at every epsilon tried)
    dp_epochs: int = 15
    dp_batch_size: int = 100      # expected batch (Opacus samples Poisson batches of this mean size)
    dp_lr: float = 2.0
    max_grad_norm: float = 1.0    # DP-SGD clips each example's gradient to this L2 norm
    delta: float = 1e-3           # (epsilon, delta)-DP: delta well below 1 / n_members
    seed: int = 0


@dataclass(frozen=True, eq=False)
class MembershipData:
    """Rows the model trains on (members), rows of the same distribution it never sees, and a test set."""
    X_in: torch.Tensor
    y_in: torch.Tensor
    X_out: torch.Tensor
    y_out: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor


def membership_data(split: Split, n_members: int, seed: int = 0) -> MembershipData:
    """Disjoint members and non-members, n_members each with the same count per class, from the training split.

    Equal class counts matter: with a few hundred rows, a class that is more common among the members is a
    membership signal of its own, one that says nothing about memorisation.
    """
    y, classes = split.y_train.numpy(), len(split.classes)
    if n_members % classes or n_members < classes:
        raise ValueError(f"n_members must be a positive multiple of {classes} (classes); got {n_members}")
    rng, per_class = np.random.default_rng(seed), n_members // classes
    inside, outside = [], []
    for c in range(classes):
        pool = rng.permutation(np.flatnonzero(y == c))
        if len(pool) < 2 * per_class:
            raise ValueError(f"class {c} has {len(pool)} training rows; need {2 * per_class}")
        inside.append(pool[:per_class])
        outside.append(pool[per_class:2 * per_class])
    inside = torch.from_numpy(rng.permutation(np.concatenate(inside)))
    outside = torch.from_numpy(rng.permutation(np.concatenate(outside)))
    X = split.X_train.flatten(1)  # (N, 64)
    return MembershipData(X[inside], split.y_train[inside], X[outside], split.y_train[outside],
                          split.X_test.flatten(1), split.y_test)


def _model(config: PrivacyConfig, in_features: int) -> nn.Module:
    torch.manual_seed(config.seed)
    return MLP(in_features, hidden=config.hidden, num_classes=10)


def _sgd(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def _run_epochs(model: nn.Module, loader, optimizer: torch.optim.Optimizer, epochs: int) -> None:
    model.train()
    for _ in range(epochs):
        for xb, yb in loader:
            if len(xb) == 0:  # Poisson sampling can draw an empty batch
                continue
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
    model.eval()


def train_plain(X: torch.Tensor, y: torch.Tensor, config: PrivacyConfig) -> nn.Module:
    """Ordinary minibatch SGD: the non-private baseline."""
    model = _model(config, X.shape[1])
    loader = make_loader(X, y, batch_size=config.batch_size, shuffle=True, seed=config.seed)
    _run_epochs(model, loader, _sgd(model, config.lr), config.epochs)
    return model


# Renyi-DP orders: Opacus's defaults hold 99 fractional ones, whose pure-Python series took ~0.8 s per epsilon
# evaluation here (~10 s per noise search); three below 2 (where small epsilons need them) and the integers
# give a bound a little looser, still valid, in a few milliseconds.
RDP_ORDERS = (1.25, 1.5, 1.75, *range(2, 65))


def noise_for_epsilon(target_epsilon: float, delta: float, sample_rate: float, epochs: int) -> float:
    """The Gaussian noise multiplier that spends target_epsilon over `epochs` of Poisson batches (RDP accountant)."""
    from opacus.accountants.utils import get_noise_multiplier

    if not target_epsilon > 0:
        raise ValueError(f"target_epsilon must be > 0; got {target_epsilon}")
    return get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta, sample_rate=sample_rate,
                                epochs=epochs, accountant="rdp", alphas=list(RDP_ORDERS))


def train_dp(X: torch.Tensor, y: torch.Tensor, config: PrivacyConfig,
             target_epsilon: float) -> tuple[nn.Module, float]:
    """DP-SGD (Opacus: per-example clipping + Gaussian noise) to (target_epsilon, delta); returns (model, epsilon)."""
    from opacus import PrivacyEngine

    sigma = noise_for_epsilon(target_epsilon, config.delta, config.dp_batch_size / len(X), config.dp_epochs)
    model = _model(config, X.shape[1])
    loader = make_loader(X, y, batch_size=config.dp_batch_size, shuffle=True, seed=config.seed)
    generator = torch.Generator().manual_seed(config.seed)  # seeds the Poisson batches and the noise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "secure RNG turned off": seeded noise for a repeatable lesson (15 §5)
        engine = PrivacyEngine(accountant="rdp")
        private, optimizer, private_loader = engine.make_private(
            module=model, optimizer=_sgd(model, config.dp_lr), data_loader=loader, noise_multiplier=sigma,
            max_grad_norm=config.max_grad_norm, noise_generator=generator)
        _run_epochs(private, private_loader, optimizer, config.dp_epochs)
    spent = engine.accountant.get_epsilon(delta=config.delta, alphas=list(RDP_ORDERS))
    return private._module, float(spent)


def per_example_loss(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Cross-entropy of each row (N,): what a loss-threshold attacker reads from the model."""
    model.eval()
    with torch.no_grad():
        return nn.functional.cross_entropy(model(X), y, reduction="none").numpy()


def accuracy_of(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Share of rows whose arg-max class is the label."""
    model.eval()
    with torch.no_grad():
        return float((model(X).argmax(dim=1) == y).float().mean())
