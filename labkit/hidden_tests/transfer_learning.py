"""Hidden tests for transfer_learning: other class counts and image sizes; the copy is independent."""
import torch

from labkit.exercises.transfer_learning import _convs, _random_cnn


def test_hidden_three_classes_and_independent_copy(sub):
    """num_classes=3 on 32x32 and 48x48 images; changing the new model leaves the pretrained one alone"""
    pretrained = _random_cnn(seed=2)
    model = sub.make_transfer_model(pretrained, 3).eval()
    with torch.no_grad():
        for size in (32, 48):
            out = model(torch.randn(2, 3, size, size))
            assert tuple(out.shape) == (2, 3), f"{size}x{size} images gave shape {tuple(out.shape)}, expected (2, 3)"
        before = _convs(pretrained)[0].weight.clone()
        _convs(model)[0].weight.add_(1.0)
    assert torch.equal(_convs(pretrained)[0].weight, before), "the transfer model shares weights with the pretrained"


TESTS = (test_hidden_three_classes_and_independent_copy,)
