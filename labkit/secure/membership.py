"""A loss-threshold membership-inference attack: privacy as a measured number, not a word.

A model's loss is lower on the rows it trained on. The attacker guesses "member" when the loss is below a
threshold; its advantage is TPR - FPR (0: guessing, 1: certain). The threshold is picked on one half of the
rows and the advantage is measured on the other half, so the number is not flattered by the choice.
Taught in 15_security_and_privacy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AttackResult:
    """What the attacker achieves: advantage = TPR - FPR on held-out rows, AUC over every threshold."""
    advantage: float
    tpr: float
    fpr: float
    auc: float
    threshold: float


def best_threshold(loss_in: np.ndarray, loss_out: np.ndarray) -> float:
    """The loss threshold maximising TPR - FPR ("member" when loss <= threshold)."""
    candidates = np.unique(np.concatenate([loss_in, loss_out]))
    tpr = (loss_in[None, :] <= candidates[:, None]).mean(axis=1)
    fpr = (loss_out[None, :] <= candidates[:, None]).mean(axis=1)
    best = int(np.argmax(tpr - fpr))
    if best + 1 < len(candidates):  # halfway to the next loss seen: the rule generalises to rows not fitted on
        return float((candidates[best] + candidates[best + 1]) / 2)
    return float(candidates[best])


def auc(loss_in: np.ndarray, loss_out: np.ndarray) -> float:
    """P(a member's loss < a non-member's), ties counting half: the ROC AUC of the attack."""
    below = (loss_in[:, None] < loss_out[None, :]).mean()
    ties = (loss_in[:, None] == loss_out[None, :]).mean()
    return float(below + 0.5 * ties)


def _one_split(loss_in: np.ndarray, loss_out: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """(tpr, fpr, threshold): threshold fitted on a random half, rates measured on the other half."""
    a, b = rng.permutation(len(loss_in)), rng.permutation(len(loss_out))
    fit_in, test_in = loss_in[a[: len(a) // 2]], loss_in[a[len(a) // 2:]]
    fit_out, test_out = loss_out[b[: len(b) // 2]], loss_out[b[len(b) // 2:]]
    threshold = best_threshold(fit_in, fit_out)
    return float((test_in <= threshold).mean()), float((test_out <= threshold).mean()), threshold


def loss_threshold_attack(loss_in: np.ndarray, loss_out: np.ndarray, repeats: int = 20,
                          seed: int = 0) -> AttackResult:
    """Fit the threshold on half the rows, measure TPR - FPR on the rest; averaged over `repeats` random halvings."""
    loss_in, loss_out = np.asarray(loss_in, dtype=float), np.asarray(loss_out, dtype=float)
    if len(loss_in) < 4 or len(loss_out) < 4:
        raise ValueError(f"need >= 4 members and non-members; got {len(loss_in)} and {len(loss_out)}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats}")
    rng = np.random.default_rng(seed)
    tpr, fpr, threshold = np.mean([_one_split(loss_in, loss_out, rng) for _ in range(repeats)], axis=0)
    return AttackResult(float(tpr - fpr), float(tpr), float(fpr), auc(loss_in, loss_out), float(threshold))
