"""Anomaly detection on service metrics (throughput, error ratio, p99 latency), scored against labelled faults.

Each detector is fit on a clean stretch, then gives one boolean per time step: robust z-score (median and
MAD, immune to the outliers it hunts), EWMA (tracks a drifting baseline, frozen while it alarms), an
IsolationForest (scikit-learn, multivariate), and the static SLO thresholds an alert rule would use.
evaluate() gives point-wise precision, recall, F1 and the detection delay per fault window.
Taught in 12_monitoring_and_alerting.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FEATURES = ("throughput_rps", "error_ratio", "p99_s")
MAD_TO_SIGMA = 1.4826          # MAD of a normal distribution times this is its standard deviation
MIN_SCALE = (1.0, 0.01, 0.005)  # per-feature floor of the spread: a constant error ratio of 0 has MAD 0


def _robust_center_scale(X: np.ndarray, min_scale=MIN_SCALE) -> tuple[np.ndarray, np.ndarray]:
    med = np.median(X, axis=0)
    mad = MAD_TO_SIGMA * np.median(np.abs(X - med), axis=0)
    return med, np.maximum(mad, np.asarray(min_scale[: X.shape[1]], dtype=float))


@dataclass
class RobustZ:
    """|x - median| / (1.4826 MAD) per feature, max over features; flags above `z`."""
    z: float = 3.5     # Iglewicz and Hoaglin's cut-off for modified z-scores

    def fit(self, X: np.ndarray) -> RobustZ:
        self.center_, self.scale_ = _robust_center_scale(np.asarray(X, float))
        return self

    def score(self, X: np.ndarray) -> np.ndarray:
        return (np.abs(np.asarray(X, float) - self.center_) / self.scale_).max(axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.score(X) > self.z


@dataclass
class EWMA:
    """Distance from an exponentially weighted mean in EW standard deviations; the baseline stops adapting
    while it alarms (otherwise a long fault becomes the new normal)."""
    alpha: float = 0.1   # weight of the newest point: a ~10-step memory
    z: float = 4.0

    def fit(self, X: np.ndarray) -> EWMA:
        self.center_, scale = _robust_center_scale(np.asarray(X, float))
        self.var_ = scale ** 2
        self.min_var_ = np.asarray(MIN_SCALE[: len(scale)], float) ** 2
        return self

    def score(self, X: np.ndarray) -> np.ndarray:
        mean, var, out = self.center_.copy(), self.var_.copy(), []
        for x in np.asarray(X, float):
            s = float((np.abs(x - mean) / np.sqrt(np.maximum(var, self.min_var_))).max())
            out.append(s)
            if s <= self.z:  # learn only from points that look normal
                diff = x - mean
                mean = mean + self.alpha * diff
                var = (1 - self.alpha) * (var + self.alpha * diff ** 2)
        return np.array(out)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.score(X) > self.z


@dataclass
class Forest:
    """scikit-learn's IsolationForest on robustly scaled features, fit on clean data; flags the points
    whose anomaly score is beyond the `quantile` of the training scores."""
    quantile: float = 0.95   # 5% of clean points: beyond its training range a forest isolates everything alike
    seed: int = 0

    def fit(self, X: np.ndarray) -> Forest:
        from sklearn.ensemble import IsolationForest

        X = np.asarray(X, float)
        self.center_, self.scale_ = _robust_center_scale(X)
        Z = (X - self.center_) / self.scale_
        self.model_ = IsolationForest(n_estimators=100, random_state=self.seed).fit(Z)
        self.threshold_ = float(np.quantile(-self.model_.score_samples(Z), self.quantile))
        return self

    def score(self, X: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples((np.asarray(X, float) - self.center_) / self.scale_)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.score(X) > self.threshold_


@dataclass
class Threshold:
    """Static SLO limits, as an alert rule writes them: error ratio above 14.4 x a 1% budget or p99 above
    100 ms. Needs no training; blind to a throughput drop."""
    max_error_ratio: float = 0.144
    max_p99_s: float = 0.1

    def fit(self, X: np.ndarray) -> Threshold:
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, float)
        return (X[:, 1] > self.max_error_ratio) | (X[:, 2] > self.max_p99_s)


def detectors() -> dict[str, object]:
    """The course's four detectors with their default settings."""
    return {"robust z (MAD)": RobustZ(), "EWMA": EWMA(), "IsolationForest": Forest(), "SLO threshold": Threshold()}


def windows(y: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index ranges of the runs of 1s in a 0/1 label vector."""
    y = np.concatenate([[0], np.asarray(y, int), [0]])
    edges = np.flatnonzero(np.diff(y))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, step_s: float = 1.0) -> dict:
    """Point-wise precision, recall, F1; faults caught; mean detection delay (s) over caught faults."""
    t, p = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    tp, fp, fn = int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    delays = []
    for start, end in windows(t):
        hits = np.flatnonzero(p[start:end])
        if hits.size:
            delays.append(hits[0] * step_s)
    n = len(windows(t))
    return {"precision": precision, "recall": recall, "f1": f1, "faults": n, "caught": len(delays),
            "mean_delay_s": float(np.mean(delays)) if delays else float("nan"),
            "false_alarms_per_100": 100 * fp / max(int((~t).sum()), 1)}


def score_all(X_train: np.ndarray, X: np.ndarray, y: np.ndarray, step_s: float = 1.0) -> list[dict]:
    """Fit every detector on X_train, evaluate it on (X, y): one row per detector."""
    rows = []
    for name, det in detectors().items():
        rows.append({"detector": name, **evaluate(y, det.fit(X_train).predict(X), step_s)})
    return rows


def simulate_series(n_steps: int = 600, n_faults: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A labelled (n_steps, 3) series shaped like the live scrape (100 req/s, ~0 errors, p99 ~17 ms, with
    benign one-step GC spikes) and n_faults injected faults: error bursts, slow replicas, traffic drops."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(100, 4, n_steps),                     # throughput_rps
                         rng.binomial(200, 0.002, n_steps) / 200,         # error_ratio: a rare failed request
                         0.017 * rng.lognormal(0, 0.12, n_steps)])        # p99_s
    spikes = rng.choice(n_steps, n_steps // 50, replace=False)
    X[spikes, 2] *= rng.uniform(1.5, 2.5, len(spikes))                   # a GC pause: not a fault
    y = np.zeros(n_steps, int)
    starts = np.sort(rng.choice(np.arange(60, n_steps - 30, 30), n_faults, replace=False))
    for start in starts:
        end, kind = start + int(rng.integers(5, 20)), int(rng.integers(3))
        y[start:end] = 1
        if kind == 0:
            X[start:end, 1] = rng.uniform(0.05, 0.5) + rng.normal(0, 0.02, end - start).clip(-0.04)
        elif kind == 1:
            X[start:end, 2] *= rng.uniform(3, 10)
        else:
            X[start:end, 0] *= rng.uniform(0.3, 0.6)
    return X, y
