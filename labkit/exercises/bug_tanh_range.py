"""Find the bug: turning a binary classifier's logits into probabilities with the wrong squashing function."""
import torch
from torch import nn

from labkit.grading.exercise import Exercise

TASK = """
A binary classifier (say, "is this request fraud?") was trained with `nn.BCEWithLogitsLoss`, so its output
for each input is a **logit**: the log-odds of class 1, any real number. The service calls
`predict_proba(logits)` to turn logits into probabilities of class 1 and `predict(logits)` to turn them into
labels 0/1 at a probability threshold of 0.5. Dashboards built on these probabilities show nonsense.

**Find the bug and fix it.** `predict_proba` must return, element by element, the probability that
`BCEWithLogitsLoss` assigned to class 1 during training (same shape as `logits`); `predict` must return a
`torch.long` tensor of 0s and 1s. Check what range the function in use actually outputs before trusting the
comment. Taught in 03_regularization_and_optimization (activations and their output ranges).
"""

STUB = '''
import torch


def predict_proba(logits: torch.Tensor) -> torch.Tensor:
    """Probability of class 1 for each logit of a model trained with BCEWithLogitsLoss."""
    return torch.tanh(logits)  # tanh squashes any real number into 0..1


def predict(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Label 0 or 1 for each logit: 1 where the probability of class 1 reaches the threshold."""
    return (predict_proba(logits) >= threshold).long()
'''

LOGITS = torch.linspace(-6, 6, 49)  # includes 0 and small positive logits such as 0.25


def test_probabilities_lie_in_0_1(sub):
    """every probability is between 0 and 1"""
    p = sub.predict_proba(LOGITS)
    worst = int(torch.argmin(torch.minimum(p, 1 - p)))
    assert bool(((p >= 0) & (p <= 1)).all()), (
        f"predict_proba({LOGITS[worst].item():g}) = {p[worst].item():.3f}, which is not a probability")


def test_agrees_with_the_training_loss(sub):
    """p equals exp(-BCEWithLogitsLoss(logit, target=1)): the probability the model was trained to output"""
    p = sub.predict_proba(LOGITS)
    want = torch.exp(-nn.functional.binary_cross_entropy_with_logits(LOGITS, torch.ones_like(LOGITS),
                                                                     reduction="none"))
    bad = (p - want).abs() > 1e-5
    if bad.any():
        i = int(bad.nonzero()[0])
        raise AssertionError(f"at logit {LOGITS[i].item():g} the training loss implies p(class 1) = "
                             f"{want[i].item():.4f}; predict_proba gives {p[i].item():.4f}")


def test_logit_zero_is_even_odds(sub):
    """a logit of 0 means odds 1:1, probability 0.5"""
    p = float(sub.predict_proba(torch.zeros(1)))
    assert abs(p - 0.5) < 1e-6, f"predict_proba(0) = {p:.3f}; log-odds 0 means both classes are equally likely"


def test_predict_follows_the_sign_of_the_logit(sub):
    """at threshold 0.5, a positive logit means class 1 and a negative one class 0"""
    labels = sub.predict(LOGITS)
    assert labels.dtype == torch.long, f"predict must return torch.long labels, got {labels.dtype}"
    want = (LOGITS >= 0).long()
    wrong = (labels != want).nonzero().flatten().tolist()
    assert not wrong, f"wrong labels for logits {[round(LOGITS[i].item(), 2) for i in wrong]}"


def test_shape_and_monotonic(sub):
    """same shape as the input; a larger logit never gives a smaller probability"""
    logits = torch.randn(3, 5) * 4
    p = sub.predict_proba(logits)
    assert p.shape == logits.shape, f"probabilities have shape {tuple(p.shape)}, expected {tuple(logits.shape)}"
    assert bool((sub.predict_proba(LOGITS).diff() >= 0).all()), "probability must grow with the logit"


EXERCISE = Exercise(
    name="bug_tanh_range", title="Find the bug · Probabilities below zero", task=TASK, stub=STUB,
    tests=(test_probabilities_lie_in_0_1, test_agrees_with_the_training_loss, test_logit_zero_is_even_odds,
           test_predict_follows_the_sign_of_the_logit, test_shape_and_monotonic),
    kind="bug", bug_tests=("test_probabilities_lie_in_0_1", "test_agrees_with_the_training_loss",
                           "test_logit_zero_is_even_odds", "test_predict_follows_the_sign_of_the_logit"),
)
