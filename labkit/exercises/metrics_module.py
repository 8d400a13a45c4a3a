"""Exercise: an evaluation module (accuracy, precision, recall, F1, confusion matrix), graded against scikit-learn."""
from math import isclose

import numpy as np
from sklearn import metrics as skm

from labkit.grading.exercise import Exercise

TASK = """
Write the evaluation module a model service reports with. Implement, **without scikit-learn** (NumPy is fine):

- `confusion_matrix(y_true, y_pred, num_classes)` → `np.ndarray` (num_classes, num_classes), rows = true class,
  columns = predicted class;
- `accuracy(y_true, y_pred)` → float;
- `precision(y_true, y_pred, num_classes)`, `recall(...)`, `f1(...)` → macro averages as floats. A class that is
  never predicted has precision 0 (as scikit-learn's `zero_division=0`); F1 is the harmonic mean of
  **precision and recall**.

Inputs are 1-D sequences of integer labels in `0..num_classes-1`. The grader compares your numbers with
scikit-learn's on random cases, including a class that is never predicted and a class that never occurs.
Worked example: notebook 01 §4 and `labkit/metrics.py`.
"""

STUB = '''
import numpy as np


def confusion_matrix(y_true, y_pred, num_classes):
    raise NotImplementedError("confusion_matrix")


def accuracy(y_true, y_pred):
    raise NotImplementedError("accuracy")


def precision(y_true, y_pred, num_classes):
    raise NotImplementedError("precision")


def recall(y_true, y_pred, num_classes):
    raise NotImplementedError("recall")


def f1(y_true, y_pred, num_classes):
    raise NotImplementedError("f1")
'''


def _cases(n_cases: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(n_cases):
        k = int(rng.integers(2, 6))
        n = int(rng.integers(1, 40))
        y_true, y_pred = rng.integers(0, k, n), rng.integers(0, k, n)
        yield k, y_true, y_pred
    yield 3, np.array([0, 1, 2, 2]), np.array([0, 1, 1, 1])  # class 2 never predicted
    yield 4, np.array([0, 1, 1, 0]), np.array([0, 1, 3, 0])  # classes 2 and 3 never occur


# The grader calls prepare() before it imports the submission: the expected values come from scikit-learn
# while nothing can patch it, and the comparisons below use names bound here, at import, so a submission that
# patches numpy, math or the builtins (even one that puts them back before the grader looks) changes nothing.
_EXPECTED: list[dict] = []
_asarray, _float, _isinstance, _floats = np.asarray, float, isinstance, (float, np.floating)


def prepare() -> None:
    """Every case with scikit-learn's answers, computed once."""
    if _EXPECTED:
        return
    for k, t, p in _cases():
        labels = range(k)
        _EXPECTED.append({
            "k": k, "t": t, "p": p, "cm": skm.confusion_matrix(t, p, labels=labels).tolist(),
            "accuracy": float(skm.accuracy_score(t, p)),
            **{name: float(fn(t, p, labels=labels, average="macro", zero_division=0)) for name, fn in
               (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score))}})


def _known() -> list[dict]:
    prepare()  # already done under the grader; here for a direct call of a test
    return _EXPECTED


def _close(got, want: float) -> bool:
    return _isinstance(got, (int, *_floats)) and isclose(_float(got), want, rel_tol=1e-9, abs_tol=1e-12)


def test_confusion_matrix(sub):
    """rows = true, columns = predicted, shape (K, K)"""
    for case in _known():
        k, t, p = case["k"], case["t"], case["p"]
        got = _asarray(sub.confusion_matrix(t, p, k))
        assert got.shape == (k, k), f"confusion_matrix shape {got.shape}, expected {(k, k)} for {k} classes"
        assert got.dtype.kind in "iu" and got.tolist() == case["cm"], (
            f"confusion_matrix wrong for y_true={t.tolist()}, y_pred={p.tolist()}")


def test_accuracy(sub):
    """fraction of exact matches"""
    for case in _known():
        got = sub.accuracy(case["t"], case["p"])
        assert _isinstance(got, _floats), f"accuracy must return a float, got {type(got).__name__}"
        assert _close(got, case["accuracy"]), f"accuracy {got} != {case['accuracy']}"


def _check_macro(sub, name: str) -> None:
    for case in _known():
        t, p, want = case["t"], case["p"], case[name]
        got = getattr(sub, name)(t, p, case["k"])
        assert _close(got, want), (f"{name} {_float(got):.4f} != scikit-learn {want:.4f} for "
                                   f"y_true={t.tolist()}, y_pred={p.tolist()}")


def test_precision(sub):
    """macro precision; a never-predicted class counts 0"""
    _check_macro(sub, "precision")


def test_recall(sub):
    """macro recall"""
    _check_macro(sub, "recall")


def test_f1(sub):
    """macro F1: harmonic mean of precision and recall per class, then averaged"""
    _check_macro(sub, "f1")


def test_no_sklearn(sub):
    """the module is written by hand, not imported from scikit-learn"""
    import inspect
    assert _close(sub.f1([0, 1, 1], [0, 1, 0], 2), 2 / 3), "f1([0, 1, 1], [0, 1, 0], 2) must be 2/3"
    source = inspect.getsource(sub)
    assert "sklearn" not in source, "write the metrics yourself: the grader uses scikit-learn only as the oracle"


EXERCISE = Exercise(
    name="metrics_module", title="Exercise · An evaluation module", task=TASK, stub=STUB,
    tests=(test_confusion_matrix, test_accuracy, test_precision, test_recall, test_f1, test_no_sklearn),
    prepare=prepare,
    protected_modules=('labkit.metrics',),
)
