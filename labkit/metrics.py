"""Classification metrics written out by hand with NumPy; tests check every one against scikit-learn.

Every function takes labels as torch tensors, NumPy arrays or lists. Labels are 1-D integer class ids
(0..K-1): pass `logits.argmax(1)`, not the logits. Where a ratio has a zero denominator (a class never
predicted, or never present) it counts as 0.0, as scikit-learn does with `zero_division=0`.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

AVERAGES = ("macro", "micro", "weighted", "binary", None)


def _to_numpy(x: Any) -> np.ndarray:
    """Tensor, array or list as a NumPy array. Taught in 01_cnn_image_classification."""
    if hasattr(x, "detach"):  # a torch tensor; no torch import needed here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _labels(y: Any, name: str) -> np.ndarray:
    """Validate one label vector and return it as int64. Taught in 01_cnn_image_classification."""
    y = _to_numpy(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D class ids; got shape {tuple(y.shape)} "
                         "(for scores or logits, pass .argmax(1))")
    if y.size == 0:
        raise ValueError(f"{name} is empty")
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise ValueError(f"{name} must hold integer class ids; got dtype {y.dtype} "
                         "(for probabilities, pass .argmax(1))")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise ValueError(f"{name} contains a negative label ({y.min()})")
    return y


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (y_true, y_pred) pair of equal length. Taught in 01_cnn_image_classification."""
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    return t, p


def _num_classes(t: np.ndarray, p: np.ndarray, num_classes: int | None) -> int:
    """num_classes if given (checked against the labels), else max label + 1. Taught in 01_cnn_image_classification."""
    seen = int(max(t.max(), p.max())) + 1
    if num_classes is None:
        return seen
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1; got {num_classes}")
    if seen > num_classes:
        raise ValueError(f"label {seen - 1} is out of range for num_classes={num_classes}")
    return num_classes


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0.0 where den == 0. Taught in 01_cnn_image_classification."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of predictions equal to the true label. Taught in 01_cnn_image_classification."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class, shape (K, K). Taught in 01_cnn_image_classification."""
    t, p = _pair(y_true, y_pred)
    k = _num_classes(t, p, num_classes)
    # each (true, pred) pair gets a unique cell id true*K + pred; one bincount fills the whole matrix
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def _counts(y_true: Any, y_pred: Any, average: str | None,
            num_classes: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class true positives, false positives, false negatives, support. Taught in 01_cnn_image_classification."""
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}; got {average!r}")
    t, p = _pair(y_true, y_pred)
    if average == "binary":
        if max(t.max(), p.max()) > 1 or (num_classes is not None and num_classes != 2):
            raise ValueError("average='binary' needs labels in {0, 1}; use 'macro', 'micro' or 'weighted'")
        num_classes = 2
    cm = confusion_matrix(t, p, num_classes)
    tp = np.diag(cm)
    return tp, cm.sum(axis=0) - tp, cm.sum(axis=1) - tp, cm.sum(axis=1)


def _average(per_class: np.ndarray, micro: float, support: np.ndarray,
             average: str | None) -> float | np.ndarray:
    """Reduce per-class scores as `average` asks. Taught in 01_cnn_image_classification."""
    if average is None:
        return per_class
    if average == "binary":
        return float(per_class[1])  # positive label is 1
    if average == "micro":
        return micro
    if average == "weighted":
        return float(np.sum(per_class * support) / support.sum())
    return float(per_class.mean())  # macro: every class counts the same, however rare


def precision(y_true: Any, y_pred: Any, average: str | None = "macro",
              num_classes: int | None = None) -> float | np.ndarray:
    """Of the samples predicted as a class, the fraction that truly are: TP / (TP + FP). Taught in 01_cnn_image_classification."""
    tp, fp, _, support = _counts(y_true, y_pred, average, num_classes)
    micro = float(_safe_div(tp.sum(), tp.sum() + fp.sum()))
    return _average(_safe_div(tp, tp + fp), micro, support, average)


def recall(y_true: Any, y_pred: Any, average: str | None = "macro",
           num_classes: int | None = None) -> float | np.ndarray:
    """Of the samples truly in a class, the fraction found: TP / (TP + FN). Taught in 01_cnn_image_classification."""
    tp, _, fn, support = _counts(y_true, y_pred, average, num_classes)
    micro = float(_safe_div(tp.sum(), tp.sum() + fn.sum()))
    return _average(_safe_div(tp, tp + fn), micro, support, average)


def _harmonic(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Harmonic mean 2PR / (P + R), 0.0 where both are 0. Taught in 01_cnn_image_classification."""
    return _safe_div(2 * p * r, p + r)


def f1(y_true: Any, y_pred: Any, average: str | None = "macro",
       num_classes: int | None = None) -> float | np.ndarray:
    """Harmonic mean of precision and recall (not of accuracy and recall). Taught in 01_cnn_image_classification."""
    tp, fp, fn, support = _counts(y_true, y_pred, average, num_classes)
    per_class = _harmonic(_safe_div(tp, tp + fp), _safe_div(tp, tp + fn))
    micro_p = _safe_div(tp.sum(), tp.sum() + fp.sum())
    micro_r = _safe_div(tp.sum(), tp.sum() + fn.sum())
    # macro F1 averages per-class F1; it is not the harmonic mean of macro precision and macro recall
    return _average(per_class, float(_harmonic(micro_p, micro_r)), support, average)


def _binary_scores(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate 0/1 labels with one real score each, both classes present. Taught in 01_cnn_image_classification."""
    t = _labels(y_true, "y_true")
    s = _to_numpy(scores).astype(np.float64)
    if s.shape != t.shape:
        raise ValueError(f"scores must have shape {t.shape} to match y_true; got {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} NaN or infinite values")
    if t.max() > 1:
        raise ValueError(f"binary ROC needs labels in {{0, 1}}; got label {t.max()}")
    if t.min() == t.max():
        raise ValueError(f"only one class ({t[0]}) present in y_true; ROC is undefined")
    return t, s


def roc_curve(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False/true positive rates at every distinct score threshold, highest first. Taught in 01_cnn_image_classification."""
    t, s = _binary_scores(y_true, scores)
    order = np.argsort(s, kind="mergesort")[::-1]  # (N,) highest score first
    t, s = t[order], s[order]
    # a threshold sits at the last sample of each run of tied scores: ties move together
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.r_[0, np.cumsum(t)[last]]
    fps = np.r_[0, last + 1 - tps[1:]]
    thresholds = np.r_[np.inf, s[last]]  # inf: "predict nothing positive", the curve's (0, 0) corner
    return fps / fps[-1], tps / tps[-1], thresholds


def _auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under a curve by the trapezoid rule. Taught in 01_cnn_image_classification."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def roc_auc(y_true: Any, scores: Any) -> float:
    """Area under the ROC curve; (N, K) probabilities give the macro one-vs-rest mean. Taught in 01_cnn_image_classification."""
    s = _to_numpy(scores)
    if s.ndim == 1:
        return _auc(*roc_curve(y_true, s)[:2])
    if s.ndim != 2 or s.shape[1] < 2:
        raise ValueError(f"scores must be (N,) or (N, K) with K >= 2; got shape {tuple(s.shape)}")
    t = _labels(y_true, "y_true")
    if t.shape[0] != s.shape[0] or t.max() >= s.shape[1]:
        raise ValueError(f"y_true (length {t.size}, max label {t.max()}) does not fit scores of shape {s.shape}")
    # softmax rows sum to 1; raw logits rank samples differently per column and give another number
    if not np.allclose(s.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("multiclass scores must be probabilities whose rows sum to 1; apply softmax to logits")
    absent = sorted(set(range(s.shape[1])) - set(t.tolist()))
    if absent:
        raise ValueError(f"class(es) {absent} never present in y_true; one-vs-rest AUC is undefined")
    return float(np.mean([roc_auc((t == k).astype(np.int64), s[:, k]) for k in range(s.shape[1])]))


def classification_report(y_true: Any, y_pred: Any,
                          class_names: Sequence[str] | None = None) -> list[dict]:
    """One row per class: precision, recall, f1 and support, ready for a table. Taught in 01_cnn_image_classification."""
    k = None if class_names is None else len(class_names)
    p = precision(y_true, y_pred, average=None, num_classes=k)
    r = recall(y_true, y_pred, average=None, num_classes=k)
    f = f1(y_true, y_pred, average=None, num_classes=k)
    support = confusion_matrix(y_true, y_pred, k).sum(axis=1)
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(p))]
    return [{"class": names[i], "precision": float(p[i]), "recall": float(r[i]),
             "f1": float(f[i]), "support": int(support[i])} for i in range(len(p))]


def max_abs_diff(reference: Any, candidate: Any) -> float:
    """max |reference - candidate| over two outputs (tensors or arrays) of exactly one shape: a parity check."""
    a, b = _to_numpy(reference), _to_numpy(candidate)
    if a.shape != b.shape:  # no broadcasting: it would hide a bug
        raise ValueError(f"cannot compare outputs of shape {a.shape} and {b.shape}")
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0
