"""labkit.metrics against scikit-learn on many random cases, including the awkward ones."""
import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from labkit import metrics as M


def _random_cases(n_cases: int = 50, seed: int = 0):
    """(y_true, y_pred, K): random sizes incl. N=1, with a class never predicted and one never present."""
    rng = np.random.default_rng(seed)
    for case in range(n_cases):
        k = int(rng.integers(2, 7))
        n = 1 if case % 10 == 0 else int(rng.integers(2, 40))
        y_true = rng.integers(0, k, n)
        y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k, n))
        if case % 3 == 1 and k > 2:
            y_pred[y_pred == k - 1] = 0  # class K-1 never predicted
        if case % 3 == 2 and k > 2:
            y_true[y_true == 1] = 2  # class 1 never present
        yield y_true, y_pred, k


CASES = list(_random_cases())
SK_SCORES = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}


@pytest.mark.parametrize("y_true,y_pred,k", CASES)
def test_matches_sklearn_on_random_cases(y_true, y_pred, k):
    labels = list(range(k))
    assert M.accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    np.testing.assert_array_equal(M.confusion_matrix(y_true, y_pred, k),
                                  skm.confusion_matrix(y_true, y_pred, labels=labels))
    for average in ("macro", "micro", "weighted", None):
        # one sklearn call per average gives all three scores (sklearn's checks cost ~20 ms a call)
        expected = skm.precision_recall_fscore_support(y_true, y_pred, average=average, labels=labels,
                                                       zero_division=0)[:3]
        for name, sk_value in zip(("precision", "recall", "f1"), expected):
            ours = getattr(M, name)(y_true, y_pred, average=average, num_classes=k)
            np.testing.assert_allclose(ours, sk_value, err_msg=f"{name} average={average}")


def test_binary_average_matches_sklearn():
    rng = np.random.default_rng(1)
    for n in (1, 2, 7, 30):
        y_true, y_pred = rng.integers(0, 2, n), rng.integers(0, 2, n)
        for name, sk_fn in SK_SCORES.items():
            np.testing.assert_allclose(getattr(M, name)(y_true, y_pred, average="binary"),
                                       sk_fn(y_true, y_pred, average="binary", zero_division=0))


def test_binary_with_no_positives_is_zero_not_nan():
    assert M.precision([0, 0, 0], [0, 0, 0], average="binary") == 0.0
    assert M.f1([0, 0, 0], [0, 0, 0], average="binary") == 0.0


def test_f1_is_harmonic_mean_of_precision_and_recall_not_accuracy():
    y_true, y_pred = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    p, r = M.precision(y_true, y_pred, "binary"), M.recall(y_true, y_pred, "binary")
    acc = M.accuracy(y_true, y_pred)
    assert M.f1(y_true, y_pred, "binary") == pytest.approx(2 * p * r / (p + r))  # 0.4
    assert M.f1(y_true, y_pred, "binary") != pytest.approx(2 * acc * r / (acc + r))  # the misconception


def test_accepts_tensors_arrays_and_lists():
    y_true, y_pred = [0, 1, 2, 2], [0, 2, 2, 1]
    expected = M.f1(y_true, y_pred)
    assert M.f1(torch.tensor(y_true), torch.tensor(y_pred)) == expected
    assert M.f1(np.array(y_true), np.array(y_pred)) == expected


def test_confusion_matrix_rows_are_true_columns_predicted():
    cm = M.confusion_matrix([0, 0, 1], [1, 1, 1])
    np.testing.assert_array_equal(cm, [[0, 2], [0, 1]])
    assert M.confusion_matrix([0], [0], num_classes=3).shape == (3, 3)


def test_classification_report_rows():
    y_true, y_pred = [0, 1, 2, 2, 1], [0, 2, 2, 2, 1]
    rows = M.classification_report(y_true, y_pred, class_names=["cat", "dog", "owl", "fox"])
    assert [r["class"] for r in rows] == ["cat", "dog", "owl", "fox"]
    sk = skm.classification_report(y_true, y_pred, labels=[0, 1, 2, 3], output_dict=True, zero_division=0)
    for i, row in enumerate(rows):
        ref = sk[str(i)]
        assert row["support"] == ref["support"]
        for key, sk_key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert row[key] == pytest.approx(ref[sk_key])
    assert [r["class"] for r in M.classification_report([0, 1], [1, 1])] == ["0", "1"]


@pytest.mark.parametrize("seed", range(20))
def test_roc_curve_and_auc_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 50))
    y_true = rng.integers(0, 2, n)
    y_true[:2] = [0, 1]  # both classes present
    scores = rng.integers(0, 5, n) / 4 if seed % 2 else rng.random(n)  # even seeds: many tied scores
    fpr, tpr, thr = M.roc_curve(y_true, scores)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y_true, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_array_equal(thr, sk_thr)
    assert M.roc_auc(y_true, scores) == pytest.approx(skm.roc_auc_score(y_true, scores))
    assert M.roc_auc(torch.tensor(y_true), torch.tensor(scores)) == pytest.approx(M.roc_auc(y_true, scores))


@pytest.mark.parametrize("seed", range(10))
def test_multiclass_auc_is_macro_one_vs_rest(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 6))
    y_true = np.r_[np.arange(k), rng.integers(0, k, 30)]  # every class present
    probs = torch.softmax(torch.tensor(rng.normal(size=(y_true.size, k))), dim=1).numpy()
    expected = skm.roc_auc_score(y_true, probs, multi_class="ovr", average="macro", labels=list(range(k)))
    assert M.roc_auc(y_true, probs) == pytest.approx(expected)


def test_auc_extremes():
    assert M.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert M.roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert M.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5  # all tied: a coin


@pytest.mark.parametrize("call,match", [
    (lambda: M.accuracy([0, 1], [0]), "differ in length"),
    (lambda: M.accuracy([], []), "empty"),
    (lambda: M.accuracy([[0, 1]], [[0, 1]]), "1-D"),
    (lambda: M.accuracy([0, 1], [0.2, 0.9]), "integer"),
    (lambda: M.accuracy([0, -1], [0, 1]), "negative"),
    (lambda: M.confusion_matrix([0, 3], [0, 1], num_classes=3), "out of range"),
    (lambda: M.precision([0, 1], [0, 1], average="samples"), "average"),
    (lambda: M.recall([0, 2], [0, 1], average="binary"), "binary"),
    (lambda: M.roc_auc([1, 1, 1], [0.1, 0.2, 0.3]), "only one class"),
    (lambda: M.roc_curve([0, 1], [0.1]), "shape"),
    (lambda: M.roc_curve([0, 1], [0.1, float("nan")]), "NaN"),
    (lambda: M.roc_curve([0, 2], [0.1, 0.2]), r"\{0, 1\}"),
    (lambda: M.roc_auc([0, 1, 1], [[2.0, -1.0, 0.5]] * 3), "sum to 1"),
    (lambda: M.roc_auc([0, 1, 1], [[0.5, 0.3, 0.2]] * 3), "never present"),
])
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_max_abs_diff_of_tensors_and_arrays_and_shape_mismatch():
    a, b = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, 2.5], [2.0, 4.0]], dtype=np.float32)
    assert M.max_abs_diff(a, b) == 1.0 and M.max_abs_diff(a, a) == 0.0
    assert M.max_abs_diff(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0
    with pytest.raises(ValueError, match="cannot compare"):
        M.max_abs_diff(a, b[:1])
