"""Hidden tests for bug_f1_definition: rare positives, where accuracy is high and F1 is not."""
import numpy as np
from sklearn import metrics as skm


def test_hidden_rare_positives(sub):
    """95 negatives and 5 positives, 10 false alarms: F1 is scikit-learn's, far below the accuracy"""
    y_true = np.array([0] * 95 + [1] * 5)
    y_pred = np.array([0] * 85 + [1] * 10 + [1] * 3 + [0] * 2)
    report = sub.binary_report(y_true, y_pred)
    want = skm.f1_score(y_true, y_pred)
    assert np.isclose(float(report["f1"]), want), f"F1 {float(report['f1']):.4f}, scikit-learn {want:.4f}"
    assert np.isclose(float(report["accuracy"]), skm.accuracy_score(y_true, y_pred))


TESTS = (test_hidden_rare_positives,)
