"""Hidden tests for bug_explain_wrong_class: three channels, many classes, each map for its own prediction."""
import torch
from captum.attr import Saliency


def _case():
    """A 3-channel CNN with 7 classes and Captum's maps, computed at import (before the submission)."""
    torch.manual_seed(11)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Tanh(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 4 * 4, 7)).eval()
    x = torch.rand(9, 3, 6, 6)
    pred = net(x).argmax(1).detach()
    return net, x, pred, Saliency(net).attribute(x.clone().requires_grad_(True), target=pred, abs=True).detach()


_CASE = _case()


def test_hidden_three_channels_seven_classes(sub):
    """every map is Captum's Saliency of that input's predicted class"""
    net, x, pred, want = _CASE
    got_pred, sal = sub.explain_prediction(net, x.clone())
    assert torch.equal(torch.as_tensor(got_pred), pred), "labels wrong"
    assert torch.allclose(torch.as_tensor(sal).detach(), want, atol=1e-5), "maps differ from Captum's Saliency"


TESTS = (test_hidden_three_channels_seven_classes,)
