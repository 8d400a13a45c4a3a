import numpy as np


def confusion_matrix(y_true, y_pred, num_classes):
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def accuracy(y_true, y_pred):
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def _safe_divide(a, b):
    return np.divide(a, b, out=np.zeros(len(a)), where=b > 0)


def _per_class(y_true, y_pred, num_classes):
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(float)
    return tp, cm.sum(axis=0).astype(float), cm.sum(axis=1).astype(float)  # tp, predicted, actual


def precision(y_true, y_pred, num_classes):
    tp, predicted, _ = _per_class(y_true, y_pred, num_classes)
    return float(_safe_divide(tp, predicted).mean())


def recall(y_true, y_pred, num_classes):
    tp, _, actual = _per_class(y_true, y_pred, num_classes)
    return float(_safe_divide(tp, actual).mean())


def f1(y_true, y_pred, num_classes):
    tp, predicted, actual = _per_class(y_true, y_pred, num_classes)
    p, r = _safe_divide(tp, predicted), _safe_divide(tp, actual)
    return float(_safe_divide(2 * p * r, p + r).mean())
