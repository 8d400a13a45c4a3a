"""The checks an explanation must pass: completeness (IG sums to f(x) - f(baseline)), faithfulness (deletion and
insertion curves against a random order), the randomization sanity check (Adebayo et al., NeurIPS 2018) and
ground truth (is the negation word among the top tokens).

Taught in 13_explainability.
"""
from __future__ import annotations

import copy
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn


def ig_completeness(model: nn.Module, x: torch.Tensor, target: torch.Tensor, n_steps: int,
                    method: str = "gausslegendre") -> np.ndarray:
    """|sum(IG) - (f(x) - f(0))| / |f(x) - f(0)| per input (Captum's convergence delta, made relative)."""
    from captum.attr import IntegratedGradients

    baseline = torch.zeros_like(x)
    _, delta = IntegratedGradients(model).attribute(x, baselines=baseline, target=target, n_steps=n_steps,
                                                    method=method, return_convergence_delta=True,
                                                    internal_batch_size=4096)
    with torch.no_grad():
        idx = torch.as_tensor(target).long().view(-1, 1)
        gap = (model(x).gather(1, idx) - model(baseline).gather(1, idx)).squeeze(1)  # f(x) - f(baseline)
    return (delta.abs() / gap.abs().clamp(min=1e-8)).detach().numpy()


def completeness_vs_steps(model: nn.Module, x: torch.Tensor, target: torch.Tensor, steps: list[int],
                          method: str = "gausslegendre") -> dict[int, float]:
    """Median relative completeness error for each number of IG steps."""
    return {n: float(np.median(ig_completeness(model, x, target, n, method))) for n in steps}


def order_from(attributions: torch.Tensor) -> torch.Tensor:
    """Feature indices (N, F), most attributed first (signed: evidence *for* the class comes first)."""
    return attributions.flatten(1).argsort(dim=1, descending=True)


def random_order(n: int, features: int, seed: int = 0) -> torch.Tensor:
    """A random permutation of the features for each of n inputs (the control every method must beat)."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(features, generator=g) for _ in range(n)])


def perturbation_curve(model: nn.Module, x: torch.Tensor, target: torch.Tensor, order: torch.Tensor,
                       steps: int = 16, mode: str = "deletion", baseline: float = 0.0) -> np.ndarray:
    """(N, steps + 1) softmax probability of the target as features are deleted (or inserted) in `order`.

    Deletion starts from x and sets the first k features of the order to `baseline`; insertion starts from the
    baseline and restores them. One batched forward of N * (steps + 1) rows."""
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion'; got {mode!r}")
    n, features = x.shape[0], x[0].numel()
    counts = torch.linspace(0, features, steps + 1).round().long()                # features changed at each step
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(features).expand(n, -1))  # rank of each feature
    changed = ranks.unsqueeze(1) < counts.view(1, -1, 1)                          # (N, S+1, F)
    flat = x.flatten(1).unsqueeze(1).expand(-1, steps + 1, -1)
    keep = ~changed if mode == "deletion" else changed
    rows = torch.where(keep, flat, torch.full_like(flat, baseline)).reshape(-1, *x.shape[1:])  # (N*(S+1), ...)
    with torch.no_grad():
        probs = torch.softmax(model(rows), dim=1).view(n, steps + 1, -1)
    return probs[torch.arange(n), :, torch.as_tensor(target).long()].numpy()


def area_under(curves: np.ndarray) -> float:
    """Mean area under (N, S+1) curves over [0, 1] (trapezoid): low for deletion and high for insertion is good."""
    return float(np.trapezoid(curves, dx=1.0 / (curves.shape[1] - 1), axis=1).mean())


def randomized_layers(model: nn.Module, seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Cascading randomization: copies of model with its parametrized layers re-initialized, top layer first."""
    torch.manual_seed(seed)
    current = copy.deepcopy(model).eval()
    layers = [(name, m) for name, m in current.named_modules() if hasattr(m, "reset_parameters")
              and any(True for _ in m.parameters(recurse=False))]
    for name, module in reversed(layers):
        module.reset_parameters()
        yield name, copy.deepcopy(current)


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Spearman rank correlation per input between |a| and |b| (N, ...): 1 means the same map."""
    from scipy.stats import spearmanr

    a, b = a.flatten(1).abs().numpy(), b.flatten(1).abs().numpy()
    rho = [spearmanr(u, v).statistic if u.std() > 0 and v.std() > 0 else 0.0 for u, v in zip(a, b)]
    return np.nan_to_num(np.asarray(rho, dtype=float))


def randomization_check(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                        explain: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
                        seed: int = 0) -> dict[str, float]:
    """Mean rank correlation of explain(model) with explain(randomized model) after each cascading step."""
    reference = explain(model, x, target)
    return {name: float(rank_correlation(reference, explain(m, x, target)).mean())
            for name, m in randomized_layers(model, seed)}


def top_k_hit_rate(token_scores: list[np.ndarray], positions: list[int], k: int = 2) -> float:
    """Share of sentences whose token at `position` is among the k tokens with the largest |score|."""
    hits = [pos in np.argsort(-np.abs(s))[:k] for s, pos in zip(token_scores, positions)]
    return float(np.mean(hits)) if hits else float("nan")
