"""Find the bug: an F1 score built from the wrong pair of numbers."""
import numpy as np
from sklearn import metrics as skm

from labkit.grading.exercise import Exercise

TASK = """
`binary_report(y_true, y_pred)` summarises a binary classifier (labels 0 and 1, class 1 is the positive
class) as a dict of floats: `accuracy`, `precision`, `recall` and `f1`. Three of the four numbers agree with
scikit-learn; one does not, and the gap is largest on imbalanced data, where it matters most.

**Find the bug and fix it.** Write the metrics by hand (NumPy is fine, scikit-learn is the grader's oracle).
A metric whose denominator is 0 is 0 (scikit-learn's `zero_division=0`). Look up the definition of each
metric before you trust the code. Taught in 01_cnn_image_classification and `labkit/metrics.py`.
"""

STUB = '''
import numpy as np


def binary_report(y_true, y_pred):
    """Accuracy, precision, recall and F1 of the positive class (1) for binary labels."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    tp = int(np.sum((y_pred == 1) & (y_true == 1)))
    fp = int(np.sum((y_pred == 1) & (y_true == 0)))
    fn = int(np.sum((y_pred == 0) & (y_true == 1)))
    accuracy = float(np.mean(y_true == y_pred))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    # F1 balances how often we are right with how many positives we find
    f1 = 2 * accuracy * recall / (accuracy + recall) if accuracy + recall else 0.0
    return {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1}
'''


def _cases(n_cases: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(n_cases):
        n, positive_rate = int(rng.integers(5, 30)), rng.uniform(0.05, 0.5)
        yield (rng.random(n) < positive_rate).astype(int), (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)


def _check(sub, key: str, reference) -> None:
    for t, p in _cases():
        got = float(sub.binary_report(t, p)[key])
        want = reference(t, p)
        assert np.isclose(got, want), (f"{key} {got:.4f} != scikit-learn {want:.4f} for "
                                       f"y_true={t.tolist()}, y_pred={p.tolist()}")


def test_accuracy(sub):
    """fraction of exact matches"""
    _check(sub, "accuracy", skm.accuracy_score)


def test_precision_and_recall(sub):
    """precision and recall of class 1, 0 when undefined"""
    _check(sub, "precision", lambda t, p: skm.precision_score(t, p, zero_division=0))
    _check(sub, "recall", lambda t, p: skm.recall_score(t, p, zero_division=0))


def test_f1_matches_scikit_learn(sub):
    """F1 of class 1 agrees with sklearn.metrics.f1_score on random cases"""
    _check(sub, "f1", lambda t, p: skm.f1_score(t, p, zero_division=0))


def test_f1_on_imbalanced_data(sub):
    """95 negatives, 5 positives, 10 predicted positive (all 5 true ones among them)"""
    y_true = np.array([1] * 5 + [0] * 95)
    y_pred = np.array([1] * 10 + [0] * 90)
    r = sub.binary_report(y_true, y_pred)
    want = skm.f1_score(y_true, y_pred)
    assert np.isclose(float(r["f1"]), want), (
        f"F1 {float(r['f1']):.3f}, scikit-learn says {want:.3f} (accuracy {r['accuracy']:.2f}, "
        f"precision {r['precision']:.2f}, recall {r['recall']:.2f}): half of the positive predictions are "
        f"wrong, and a high accuracy on imbalanced data should not hide that")


EXERCISE = Exercise(
    name="bug_f1_definition", title="Find the bug · The flattering F1", task=TASK, stub=STUB,
    tests=(test_accuracy, test_precision_and_recall, test_f1_matches_scikit_learn, test_f1_on_imbalanced_data),
    kind="bug", bug_tests=("test_f1_matches_scikit_learn", "test_f1_on_imbalanced_data"),
    protected_modules=('labkit.metrics',),
)
