"""Hidden tests for explanation_module: an image-shaped input, a batch of one, and an uninformative model."""
import numpy as np
import torch
from captum.attr import IntegratedGradients


def _image_case():
    """(N, 1, 6, 6) images through a small CNN and Captum's answer, computed at import (before the submission)."""
    torch.manual_seed(5)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Softplus(), torch.nn.Flatten(),
                              torch.nn.Linear(64, 3)).eval()
    x, base, target = torch.rand(4, 1, 6, 6), torch.zeros(4, 1, 6, 6), torch.tensor([2, 0, 1, 2])
    want = IntegratedGradients(net).attribute(x, baselines=base, target=target, n_steps=16, method="riemann_right")
    return net, x, base, target, want.detach()


_IMAGE = _image_case()


def test_hidden_ig_on_images_with_a_black_baseline(sub):
    """(N, 1, 6, 6) images through a small CNN, zero baseline, 16 steps: Captum's riemann_right IG"""
    net, x, base, target, want = _IMAGE
    got = torch.as_tensor(sub.integrated_gradients(net, x.clone(), base.clone(), target.clone(), 16)).detach()
    assert got.shape == x.shape and torch.allclose(got.float(), want, atol=1e-4, rtol=1e-3), \
        "IG differs from Captum on image-shaped inputs"


def test_hidden_constant_model_has_no_important_feature(sub):
    """a model that always answers 1 loses nothing when any column is shuffled"""
    X, y = np.random.default_rng(3).normal(size=(50, 4)), np.array([0, 1] * 25)
    got = np.asarray(sub.permutation_importance(lambda Z: np.ones(len(Z), dtype=int), X, y, 5, 0), dtype=float)
    assert got.shape == (4,) and np.allclose(got, 0.0), f"importances of a constant model {got.tolist()}"


TESTS = (test_hidden_ig_on_images_with_a_black_baseline, test_hidden_constant_model_has_no_important_feature)
