"""Explanations as a debugging tool on a table: scikit-learn's breast-cancer data (ships with sklearn) with a
planted pure-noise column and a planted column that leaks the label, a logistic-regression model, SHAP's
KernelExplainer, LIME's tabular explainer and permutation importance. A shortcut shows up as the top feature.

Taught in 13_explainability.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOISE, LEAK = "planted_noise", "planted_leak"


@dataclass(frozen=True)
class Table:
    """Train/test features (float64) and labels, with the feature names (the planted ones last)."""
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    features: tuple[str, ...]


def planted_table(n_features: int = 8, leak_noise: float = 0.3, seed: int = 0) -> Table:
    """The first n_features breast-cancer columns plus NOISE (independent of y) and LEAK (y + noise)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    rng = np.random.default_rng(seed)
    X, y = data.data[:, :n_features], data.target
    noise = rng.normal(size=len(y))
    leak = y + leak_noise * rng.normal(size=len(y))  # a column that was filled in after the diagnosis
    X = np.column_stack([X, noise, leak])
    names = tuple(str(n).replace(" ", "_") for n in data.feature_names[:n_features]) + (NOISE, LEAK)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
    return Table(X_tr, y_tr, X_te, y_te, names)


def fit_model(table: Table, drop: tuple[str, ...] = ()):
    """Standardize + logistic regression on every feature except `drop` (a fitted sklearn Pipeline)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return model.fit(_masked(table.X_train, table, drop), table.y_train)


def _masked(X: np.ndarray, table: Table, drop: tuple[str, ...]) -> np.ndarray:
    keep = [i for i, f in enumerate(table.features) if f not in drop]
    return X[:, keep]


def kernel_shap(predict_proba, X_background: np.ndarray, X: np.ndarray, nsamples: int = 256,
                background: int = 20, seed: int = 0) -> tuple[np.ndarray, float]:
    """(SHAP values (n, F) of p(class 1), expected value) from KernelExplainer with a small sampled background."""
    import shap

    rng = np.random.default_rng(seed)
    bg = X_background[rng.choice(len(X_background), size=min(background, len(X_background)), replace=False)]
    f = lambda Z: predict_proba(Z)[:, 1]  # noqa: E731 -- explain one output: the positive class
    explainer = shap.KernelExplainer(f, bg)
    values = explainer.shap_values(X, nsamples=nsamples, silent=True)
    return np.asarray(values), float(explainer.expected_value)


def local_accuracy_error(predict_proba, X: np.ndarray, values: np.ndarray, expected: float) -> np.ndarray:
    """|expected value + sum of SHAP values - model output| per row (SHAP's local accuracy property)."""
    return np.abs(expected + values.sum(axis=1) - predict_proba(X)[:, 1])


def permutation_ranking(model, X: np.ndarray, y: np.ndarray, features: tuple[str, ...], repeats: int = 10,
                        seed: int = 0):
    """sklearn's permutation importance (drop in accuracy when a column is shuffled), as a pandas Series."""
    import pandas as pd
    from sklearn.inspection import permutation_importance

    result = permutation_importance(model, X, y, n_repeats=repeats, random_state=seed, scoring="accuracy")
    return pd.Series(result.importances_mean, index=list(features), name="permutation")


def importance_table(model, table: Table, values: np.ndarray, repeats: int = 10, seed: int = 0):
    """Global importance two ways, side by side with ranks: permutation importance and mean |SHAP|."""
    import pandas as pd

    perm = permutation_ranking(model, table.X_test, table.y_test, table.features, repeats, seed)
    shap_abs = pd.Series(np.abs(values).mean(axis=0), index=list(table.features), name="mean |SHAP|")
    out = pd.concat([perm, shap_abs], axis=1)
    out["rank (permutation)"] = out["permutation"].rank(ascending=False).astype(int)
    out["rank (SHAP)"] = out["mean |SHAP|"].rank(ascending=False).astype(int)
    return out.sort_values("mean |SHAP|", ascending=False)


def lime_tabular_weights(model, table: Table, row: np.ndarray, num_samples: int = 500, seed: int = 0):
    """LIME's local linear weights for one row (class 1), as a pandas Series by feature name."""
    import pandas as pd
    from lime.lime_tabular import LimeTabularExplainer

    explainer = LimeTabularExplainer(table.X_train, feature_names=list(table.features), discretize_continuous=False,
                                     random_state=seed, mode="classification")
    exp = explainer.explain_instance(row, model.predict_proba, labels=(1,), num_features=len(table.features),
                                     num_samples=num_samples)
    return pd.Series(dict(exp.local_exp[1]), name="LIME weight").rename(index=dict(enumerate(table.features)))
