"""Find the bug: an evaluation report that prints a number it never measured."""
import contextlib
import io
import re

import torch
from torch import nn

from labkit.grading.exercise import Exercise

TASK = """
`evaluate_and_report(model, X, y)` is what a training script calls before a model is shipped: it runs the
classifier on the held-out images `X` (labels `y`), prints one line with the accuracy, and returns
`{"accuracy": float, "n": int}`. The report looks fine on every model it has ever been run on. That is the
problem.

**Find the bug and fix it.** The accuracy must be the fraction of samples whose predicted class (the largest
score) equals the label, and the printed line must show that same number (as a fraction or a percentage).
The grader checks the report with models whose accuracy it knows. Taught in 00_welcome: every number in this
course is measured in the run that shows it.
"""

STUB = '''
import torch


def evaluate_and_report(model, X, y):
    """Print and return the accuracy of `model` on the held-out set (X, y)."""
    model.eval()
    with torch.no_grad():
        y_hat = model(X).argmax(dim=1)
    n = len(y)
    correct = int((y_hat == y).sum())
    accuracy = 0.95  # what this architecture reaches on held-out shapes
    print(f"Held-out accuracy: {accuracy:.1%} on {n} samples")
    return {"accuracy": accuracy, "n": n}
'''


class AlwaysClassZero(nn.Module):
    """Predicts class 0 for every input."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = torch.zeros(len(x), self.num_classes)  # (N, K)
        scores[:, 0] = 1.0
        return scores


def _balanced(num_classes: int = 4, per_class: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(num_classes).repeat_interleave(per_class)  # (N,)
    return torch.randn(len(y), 8), y


def _report(sub, model, X, y) -> tuple[dict, str]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        report = sub.evaluate_and_report(model, X, y)
    return report, printed.getvalue()


def test_constant_model_on_balanced_set(sub):
    """a model that always says class 0 on a balanced 4-class set is right 25% of the time"""
    X, y = _balanced()
    report, _ = _report(sub, AlwaysClassZero(4), X, y)
    assert abs(report["accuracy"] - 0.25) < 1e-9, (
        f"reported accuracy {report['accuracy']}, but this model predicts class 0 for all 40 samples and only "
        f"10 of them are class 0 (measured accuracy 0.25)")


def test_perfect_model(sub):
    """a model whose scores are the one-hot labels is right every time"""
    y = torch.tensor([0, 1, 2, 2, 1, 0, 2])
    X = nn.functional.one_hot(y, 3).float()  # (N, 3)
    report, _ = _report(sub, nn.Identity(), X, y)
    assert abs(report["accuracy"] - 1.0) < 1e-9, (f"reported accuracy {report['accuracy']} for a model that is "
                                                   f"always right")


def test_printed_value_is_the_measured_one(sub):
    """the printed line shows the measured accuracy, as a fraction or a percentage"""
    X, y = _balanced(num_classes=5, per_class=5)  # 25 samples, 5 right: 0.2
    report, text = _report(sub, AlwaysClassZero(5), X, y)
    numbers = [float(s) for s in re.findall(r"\d+(?:\.\d+)?", text)]
    shown = any(abs(v - 0.2) < 5e-3 or abs(v - 20.0) < 0.5 for v in numbers)
    assert shown, f"the measured accuracy is 0.2 (20%), but the report printed: {text.strip()!r}"


def test_returns_accuracy_and_count(sub):
    """returns {'accuracy': float in [0, 1], 'n': number of samples}"""
    X, y = _balanced()
    report, _ = _report(sub, AlwaysClassZero(4), X, y)
    assert isinstance(report, dict) and {"accuracy", "n"} <= set(report), (
        f"expected a dict with 'accuracy' and 'n', got {report!r}")
    assert isinstance(report["accuracy"], float), (
        f"accuracy must be a Python float, got {type(report['accuracy']).__name__}")
    assert 0.0 <= report["accuracy"] <= 1.0 and report["n"] == 40, f"got {report!r} for 40 samples"


EXERCISE = Exercise(
    name="bug_invented_accuracy", title="Find the bug · The report that is always good", task=TASK, stub=STUB,
    tests=(test_constant_model_on_balanced_set, test_perfect_model, test_printed_value_is_the_measured_one,
           test_returns_accuracy_and_count),
    kind="bug", bug_tests=("test_constant_model_on_balanced_set", "test_perfect_model",
                           "test_printed_value_is_the_measured_one"),
)
