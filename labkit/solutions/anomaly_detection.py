import numpy as np


def detect(train, series):
    """True for each row of series (n, 3) that looks like a fault, given healthy rows train (n_train, 3)."""
    train, series = np.asarray(train, float), np.asarray(series, float)
    median = np.median(train, axis=0)
    mad = 1.4826 * np.median(np.abs(train - median), axis=0)        # ~ the standard deviation, robustly
    floor = np.array([0.01 * abs(median[0]) + 1e-9, 0.01, 0.005])    # a column with MAD 0 (no errors at all)
    z = np.abs(series - median) / np.maximum(mad, floor)
    return (z > 3.5).any(axis=1)
