"""Hidden tests for metrics_module: many classes with absent ones, plain Python lists, extreme cases."""
import numpy as np
from sklearn import metrics as skm


def test_hidden_many_classes_from_lists(sub):
    """nine classes, two never seen, 400 labels given as Python lists"""
    rng = np.random.default_rng(7)
    t, p, k = rng.integers(0, 7, 400).tolist(), rng.integers(0, 6, 400).tolist(), 9
    cm = np.asarray(sub.confusion_matrix(t, p, k))
    assert cm.shape == (k, k) and np.array_equal(cm, skm.confusion_matrix(t, p, labels=range(k))), \
        "confusion_matrix wrong with 9 classes given as lists"
    assert cm.dtype.kind in "iu", f"confusion_matrix holds counts: integers, not {cm.dtype}"
    assert np.isclose(sub.accuracy(t, p), skm.accuracy_score(t, p)), "accuracy wrong on lists"
    for name, reference in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        want = reference(t, p, labels=range(k), average="macro", zero_division=0)
        assert np.isclose(float(getattr(sub, name)(t, p, k)), want), f"{name} wrong with two absent classes"


def test_hidden_perfect_and_all_wrong(sub):
    """a perfect prediction scores 1 everywhere; a prediction never right scores 0"""
    t = [0, 1, 2, 0, 1, 2]
    for name in ("precision", "recall", "f1"):
        assert np.isclose(float(getattr(sub, name)(t, t, 3)), 1.0), f"{name} of a perfect prediction must be 1"
        assert np.isclose(float(getattr(sub, name)(t, [1, 2, 0, 1, 2, 0], 3)), 0.0), f"{name} of all-wrong must be 0"
    assert np.isclose(sub.accuracy(t, t), 1.0) and np.isclose(sub.accuracy(t, [1, 2, 0, 1, 2, 0]), 0.0)


TESTS = (test_hidden_many_classes_from_lists, test_hidden_perfect_and_all_wrong)
