"""Find the bug: a saliency map that explains the wrong class."""
import torch
from captum.attr import Saliency

from labkit.grading.exercise import Exercise

TASK = """
`explain_prediction(model, x)` is what a model server's debugging page calls: for images x (N, C, H, W)
it returns the predicted class of each input, a LongTensor (N,), and a saliency map shaped like x:
`|d logit[i, pred_i] / d x[i]|`, the gradient magnitude of **that input's predicted class** logit.
The labels are right; the maps look plausible (they sit on the strokes); and yet they do not explain
the predictions. Compare them with Captum's `Saliency` for the predicted class.

**Find the bug and fix it** (PyTorch only; Captum is the grader's oracle). Taught in 13_explainability §2.
"""

STUB = '''
import torch


def explain_prediction(model, x):
    """(predicted class (N,), |gradient of each input's predicted-class logit| shaped like x)."""
    model.eval()
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)                                # (N, K)
    pred = logits.argmax(dim=1)                      # (N,)
    score = logits.max(dim=0).values.sum()           # the winning logits, summed so one backward serves all
    score.backward()
    return pred.detach(), x.grad.abs()
'''


def _case() -> tuple[torch.nn.Module, torch.Tensor]:
    """A small CNN with fixed weights and 6 random 1x8x8 images."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(256, 5)).eval()
    return net, torch.rand(6, 1, 8, 8)


_EXPECTED: dict = {}


def prepare() -> None:
    """Captum's answer, computed before the submission is imported."""
    if _EXPECTED:
        return
    net, x = _case()
    pred = net(x).argmax(1)
    _EXPECTED.update(net=net, x=x, pred=pred.detach(),
                     saliency=Saliency(net).attribute(x.clone().requires_grad_(True), target=pred, abs=True).detach())


def _known() -> dict:
    prepare()
    return _EXPECTED


def test_labels_are_the_predictions(sub):
    """pred is the argmax class of each input"""
    k = _known()
    pred, _ = sub.explain_prediction(k["net"], k["x"].clone())
    assert torch.equal(torch.as_tensor(pred), k["pred"]), f"labels {pred.tolist()} vs {k['pred'].tolist()}"


def test_map_is_shaped_like_the_input(sub):
    """one non-negative value per pixel"""
    k = _known()
    _, sal = sub.explain_prediction(k["net"], k["x"].clone())
    assert tuple(sal.shape) == tuple(k["x"].shape) and bool((sal >= 0).all())


def test_saliency_explains_the_predicted_class(sub):
    """each map equals Captum's Saliency for that input's predicted class"""
    k = _known()
    _, sal = sub.explain_prediction(k["net"], k["x"].clone())
    diff = (torch.as_tensor(sal).detach() - k["saliency"]).abs().flatten(1).amax(1)
    wrong = [i for i, d in enumerate(diff.tolist()) if d > 1e-5]
    assert not wrong, (f"inputs {wrong} are explained for another class than their prediction: whose logit "
                       f"does each map's gradient come from?")


def test_one_input_alone(sub):
    """a batch of one: the map is the gradient of its predicted logit, not of every class"""
    k = _known()
    _, sal = sub.explain_prediction(k["net"], k["x"][:1].clone())
    assert torch.allclose(torch.as_tensor(sal).detach(), k["saliency"][:1], atol=1e-5), \
        "for one input, only the predicted class's logit may be differentiated"


EXERCISE = Exercise(
    name="bug_explain_wrong_class", title="Find the bug · The saliency map of someone else's class", task=TASK,
    stub=STUB, tests=(test_labels_are_the_predictions, test_map_is_shaped_like_the_input,
                      test_saliency_explains_the_predicted_class, test_one_input_alone),
    kind="bug", bug_tests=("test_saliency_explains_the_predicted_class", "test_one_input_alone"),
    prepare=prepare, protected_modules=("labkit.explain.attributions",),
)
