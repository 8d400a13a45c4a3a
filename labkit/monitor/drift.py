"""Debugging a model in production: input and prediction drift, training/serving skew, non-finite guards.

Drift compares a window of served values with a reference window from training time: the population
stability index (PSI, bins at the reference quantiles; > 0.2 is the usual "shifted" line) and the
two-sample Kolmogorov-Smirnov test. A detector is only useful with a known false-alarm rate, so
false_alarm_rate() runs it over many windows drawn from the unshifted distribution.
Taught in 12_monitoring_and_alerting.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

PSI_ALERT = 0.2   # rule of thumb: < 0.1 stable, 0.1-0.2 watch, > 0.2 shifted


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index: sum (c - r) ln(c / r) over bins cut at the reference's quantiles."""
    reference, current = np.asarray(reference, float), np.asarray(current, float)
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    r = np.histogram(reference, edges)[0] / len(reference)
    c = np.histogram(current, edges)[0] / len(current)
    r, c = np.maximum(r, eps), np.maximum(c, eps)
    return float(np.sum((c - r) * np.log(c / r)))


def ks_pvalue(reference: np.ndarray, current: np.ndarray) -> float:
    """p-value of the two-sample Kolmogorov-Smirnov test (small = the distributions differ)."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(reference, current).pvalue)


def psi_drifted(reference: np.ndarray, current: np.ndarray) -> bool:
    """PSI above the 0.2 line."""
    return psi(reference, current) > PSI_ALERT


def ks_drifted(reference: np.ndarray, current: np.ndarray, alpha: float = 0.01) -> bool:
    """KS test rejects 'same distribution' at level alpha."""
    return ks_pvalue(reference, current) < alpha


def false_alarm_rate(detector: Callable[[np.ndarray, np.ndarray], bool], reference: np.ndarray,
                     windows: Sequence[np.ndarray]) -> float:
    """Fraction of unshifted windows the detector flags (it should be near its nominal level, or 0)."""
    if len(windows) == 0:
        raise ValueError("need at least one window")
    return float(np.mean([detector(reference, w) for w in windows]))


def skew_report(offline_probs: np.ndarray, online_probs: np.ndarray, atol: float = 1e-4) -> dict:
    """Training/serving skew on the same inputs: how often the served answer differs from the offline one."""
    a, b = np.asarray(offline_probs, float), np.asarray(online_probs, float)
    if a.shape != b.shape:
        raise ValueError(f"offline {a.shape} and online {b.shape} predictions must have the same shape")
    diff = np.abs(a - b).max(axis=1)
    return {"inputs": len(a), "max_abs_diff": float(diff.max()), "mismatch_rate": float(np.mean(diff > atol)),
            "label_flip_rate": float(np.mean(a.argmax(1) != b.argmax(1)))}


def finite_guard(x: np.ndarray) -> np.ndarray:
    """Rows of x that hold only finite numbers (a mask): NaN or inf must be refused, not served."""
    x = np.asarray(x, float)
    return np.isfinite(x.reshape(len(x), -1)).all(axis=1)
