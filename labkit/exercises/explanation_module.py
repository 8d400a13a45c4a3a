"""Exercise: Integrated Gradients by hand (graded against Captum) and permutation importance (against scikit-learn)."""
import numpy as np
import torch
from captum.attr import IntegratedGradients
from sklearn.inspection import permutation_importance as sk_permutation_importance
from sklearn.linear_model import LogisticRegression

from labkit.grading.exercise import Exercise

TASK = """
Write the two explanation methods a model service's debugging page needs, **without Captum, SHAP or
scikit-learn's inspection module** (PyTorch and NumPy are fine):

- `integrated_gradients(model, x, baseline, target, n_steps)` → a tensor shaped like `x` (N, ...): for each
  input, `(x - baseline) * mean_k grad f_target(baseline + a_k (x - baseline))` with the right Riemann sum
  `a_k = k / n_steps`, k = 1..n_steps (Captum's `method="riemann_right"`). `model` maps (N, ...) to logits
  (N, K); `target` is a LongTensor (N,) of classes; `baseline` has x's shape.
- `permutation_importance(predict, X, y, n_repeats, seed)` → `np.ndarray` (F,): for each column j, the
  accuracy of `predict(X)` minus its accuracy when column j is shuffled (rows permuted, other columns
  kept), averaged over n_repeats shuffles. Do not modify X.

The grader compares your IG with Captum's on the same model, baseline and steps, checks completeness
(attributions sum to f(x) - f(baseline) as the steps grow), and compares your importances with
scikit-learn's `permutation_importance` (a tolerance covers the different shuffles).
Worked example: notebook 13 §2 and §6, `labkit/explain/checks.py` and `labkit/explain/tabular.py`.
"""

STUB = '''
import numpy as np
import torch


def integrated_gradients(model, x, baseline, target, n_steps):
    raise NotImplementedError("integrated_gradients")


def permutation_importance(predict, X, y, n_repeats, seed):
    raise NotImplementedError("permutation_importance")
'''


def _model() -> torch.nn.Module:
    """A small smooth MLP (Tanh): 12 inputs, 3 classes, fixed seed."""
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))  # small weights: Tanh stays out of saturation
    return net.eval()


def _table(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """400 rows: 4 informative columns of decreasing weight, 1 noise column, 1 label-leaking column."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, 6))
    y = (X[:, :4] @ np.array([2.0, 1.0, 0.5, 0.2]) + 0.5 * rng.normal(size=400) > 0).astype(int)
    X[:, 5] = y + 0.8 * rng.normal(size=400)
    return X, y


# Expected values from the oracles, computed in prepare() before the submission is imported (it cannot patch
# Captum, scikit-learn or torch first); the comparisons use names bound here, at import.
_EXPECTED: dict = {}
_allclose, _asarray, _abs, _float = np.allclose, np.asarray, np.abs, float


def prepare() -> None:
    """Captum's IG and scikit-learn's permutation importance on the grading cases."""
    if _EXPECTED:
        return
    model, g = _model(), torch.Generator().manual_seed(1)
    x, base = torch.randn(6, 12, generator=g), 0.1 * torch.randn(6, 12, generator=g)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    ig = IntegratedGradients(model)
    _EXPECTED["ig"] = {n: ig.attribute(x, baselines=base, target=target, n_steps=n, method="riemann_right").detach()
                       for n in (8, 32)}
    with torch.no_grad():
        idx = target.view(-1, 1)
        _EXPECTED["gap"] = (model(x).gather(1, idx) - model(base).gather(1, idx)).squeeze(1).numpy()
    X, y = _table()
    clf = LogisticRegression().fit(X, y)
    ref = sk_permutation_importance(clf, X, y, n_repeats=30, random_state=0, scoring="accuracy")
    _EXPECTED.update(case=(model, x, base, target), table=(clf, X, y), perm=ref.importances_mean)


def _known() -> dict:
    prepare()  # already done under the grader; here for a direct call of a test
    return _EXPECTED


def test_ig_matches_captum(sub):
    """same model, baseline and steps (8 and 32) as Captum's riemann_right IG"""
    _by_hand(sub)
    model, x, base, target = _known()["case"]
    for n, want in _known()["ig"].items():
        got = sub.integrated_gradients(model, x.clone(), base.clone(), target.clone(), n)
        got = torch.as_tensor(got).detach()
        assert tuple(got.shape) == tuple(x.shape), f"attributions shape {tuple(got.shape)}, expected {tuple(x.shape)}"
        assert torch.allclose(got.float(), want, atol=1e-4, rtol=1e-3), (
            f"n_steps={n}: largest difference from Captum {float((got - want).abs().max()):.4g}; check the "
            f"alphas (k / n for k = 1..n), the (x - baseline) factor and the target class")


def _by_hand(sub) -> None:
    """No Captum, SHAP or scikit-learn in the submission: they are the grader's oracles."""
    import inspect
    import re
    found = re.findall(r"\b(captum|shap|sklearn)\b", inspect.getsource(sub))
    assert not found, f"write the methods yourself: {sorted(set(found))} are the grader's oracles, not tools here"


def test_ig_completeness(sub):
    """with 256 steps the attributions sum to f(x) - f(baseline) within 1% (of the gap, or of 1 if smaller)"""
    model, x, base, target = _known()["case"]
    got = torch.as_tensor(sub.integrated_gradients(model, x.clone(), base.clone(), target.clone(), 256)).detach()
    sums, gap = got.flatten(1).sum(1).numpy(), _known()["gap"]
    err = _abs(sums - gap) / _abs(gap).clip(1.0)   # relative, or absolute for a gap below 1
    assert (err < 0.01).all(), f"completeness error {err.max():.3%} (sum {sums.tolist()} vs f(x)-f(b) {gap.tolist()})"


def test_permutation_importance_matches_sklearn(sub):
    """mean accuracy drop per column within 0.03 of scikit-learn's (30 shuffles each)"""
    _by_hand(sub)
    clf, X, y = _known()["table"]
    X_copy = X.copy()
    got = _asarray(sub.permutation_importance(clf.predict, X_copy, y, 30, 0), dtype=float)
    want = _known()["perm"]
    assert got.shape == want.shape, f"importances shape {got.shape}, expected {want.shape}"
    assert _allclose(X_copy, X), "permutation_importance changed X: shuffle a copy"
    assert _allclose(got, want, atol=0.03), f"importances {got.round(3).tolist()} vs scikit-learn {want.round(3).tolist()}"


def test_permutation_importance_finds_the_leak(sub):
    """the label-leaking column ranks first and the noise column near zero"""
    clf, X, y = _known()["table"]
    got = _asarray(sub.permutation_importance(clf.predict, X.copy(), y, 10, 1), dtype=float)
    assert int(got.argmax()) in (0, 5) and _float(_abs(got[4])) < 0.02, f"importances {got.round(3).tolist()}"


EXERCISE = Exercise(
    name="explanation_module", title="Exercise · Integrated Gradients and permutation importance by hand",
    task=TASK, stub=STUB,
    tests=(test_ig_matches_captum, test_ig_completeness, test_permutation_importance_matches_sklearn,
           test_permutation_importance_finds_the_leak),
    prepare=prepare,
    protected_modules=("labkit.explain.checks", "labkit.explain.tabular", "labkit.explain.attributions"),
)
