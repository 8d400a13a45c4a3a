"""Transfer learning: frozen features stay put, fine-tuning moves them, the head pools, bad input is named."""
import pytest
import torch
from torch import nn

from labkit import models, transfer


def _pretrained(batch_norm: bool = False) -> models.SmallCNN:
    torch.manual_seed(0)
    return models.SmallCNN(in_channels=3, num_classes=12, image_size=32, batch_norm=batch_norm)


def _one_step(model: nn.Module, lr: float = 0.1) -> None:
    """One SGD step on a random batch of 3x32x32 images with 10 classes."""
    torch.manual_seed(1)
    X, y = torch.rand(8, 3, 32, 32), torch.arange(8) % 10
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    loss = nn.functional.cross_entropy(model(X), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], module: nn.Module) -> list[str]:
    return [k for k, v in module.state_dict().items() if not torch.equal(before[k], v)]


def test_digits_to_rgb32_shape_and_channels():
    X = torch.rand(5, 1, 8, 8)
    out = transfer.digits_to_rgb32(X)
    assert out.shape == (5, 3, 32, 32)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])  # grey copied to R, G, B
    torch.testing.assert_close(out.mean(), X.mean(), atol=0.02, rtol=0)  # resizing keeps the brightness


def test_digits_to_rgb32_rejects_colour_or_flat_input():
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\); got \(5, 3, 8, 8\)"):
        transfer.digits_to_rgb32(torch.rand(5, 3, 8, 8))
    with pytest.raises(ValueError, match=r"got \(5, 64\)"):
        transfer.digits_to_rgb32(torch.rand(5, 64))


@pytest.mark.parametrize("batch_norm", [False, True])
def test_frozen_mode_changes_head_only(batch_norm):
    cnn = _pretrained(batch_norm)
    model = transfer.from_pretrained(cnn, num_classes=10, mode="frozen")
    features, head = _snapshot(model.features), _snapshot(model.head)
    _one_step(model)
    assert _changed(features, model.features) == []  # weights and batch-norm running stats alike
    assert set(_changed(head, model.head)) == {"2.weight", "2.bias"}
    assert not model.features.training and model.head.training


def test_finetune_mode_changes_features_and_head():
    model = transfer.from_pretrained(_pretrained(), num_classes=10, mode="finetune")
    features, head = _snapshot(model.features), _snapshot(model.head)
    _one_step(model)
    assert set(_changed(features, model.features)) == set(features)  # every conv weight and bias moved
    assert set(_changed(head, model.head)) == set(head)


def test_from_pretrained_copies_and_leaves_the_source_alone():
    cnn = _pretrained()
    before = _snapshot(cnn)
    model = transfer.from_pretrained(cnn, num_classes=10, mode="finetune")
    for k, v in cnn.features.state_dict().items():
        assert torch.equal(model.features.state_dict()[k], v)  # same pretrained weights...
    _one_step(model)
    assert _changed(before, cnn) == []  # ...but a copy: training the new model does not touch the old one
    assert all(p.requires_grad for p in cnn.parameters())


def test_trainable_parameter_counts():
    cnn = _pretrained()
    frozen = transfer.from_pretrained(cnn, num_classes=10, mode="frozen")
    finetune = transfer.from_pretrained(cnn, num_classes=10, mode="finetune")
    head = 32 * 10 + 10  # 32 pooled channels -> 10 classes
    assert models.count_parameters(frozen, trainable_only=True) == head
    assert models.count_parameters(finetune, trainable_only=True) == models.count_parameters(cnn.features) + head


def test_bad_mode_raises():
    with pytest.raises(ValueError, match="mode must be one of"):
        transfer.from_pretrained(_pretrained(), num_classes=10, mode="freeze")


def test_freeze_unfreeze_round_trip():
    layer = nn.Linear(3, 2)
    assert transfer.is_frozen(transfer.freeze(layer))
    assert not transfer.is_frozen(transfer.unfreeze(layer))
    assert not transfer.is_frozen(nn.ReLU())  # nothing to freeze is not "frozen"


@pytest.mark.parametrize("size", [16, 32, 40])
def test_pooling_head_takes_any_image_size(size):
    model = transfer.from_pretrained(_pretrained(), num_classes=10).eval()
    assert model(torch.rand(2, 3, size, size)).shape == (2, 10)


def test_dense_layer_on_unpooled_map_fails():
    fmap = _pretrained().features(torch.rand(4, 3, 32, 32))  # (4, 32, 8, 8)
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        nn.Linear(32, 10)(fmap)  # Linear acts on the LAST axis (width 8), not on the 32 channels
    assert nn.Linear(8, 10)(fmap).shape == (4, 32, 8, 10)  # "fits" silently, and is still not (N, classes)


def test_head_names_a_channel_mismatch():
    model = transfer.TransferNet(nn.Conv2d(3, 16, 3), num_classes=10, feature_channels=32)
    with pytest.raises(ValueError, match=r"\(N, 32, H, W\)"):
        model(torch.rand(2, 3, 32, 32))


def test_last_conv_channels_and_bad_arguments():
    assert transfer.last_conv_channels(_pretrained().features) == 32
    with pytest.raises(ValueError, match="no Conv2d"):
        transfer.last_conv_channels(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="num_classes >= 2"):
        transfer.TransferNet(nn.Identity(), num_classes=1, feature_channels=8)


def test_digits_to_rgb32_content_is_centred_on_background():
    X = torch.ones(2, 1, 8, 8)
    out = transfer.digits_to_rgb32(X, content=16)
    assert out.shape == (2, 3, 32, 32)
    assert out[:, :, 8:24, 8:24].min() > 0.99  # the digit, 16 px, in the middle
    assert out[:, :, :8].abs().max() == 0 and out[:, :, :, 24:].abs().max() == 0  # background around it
    with pytest.raises(ValueError, match="content must be between 1 and size=32"):
        transfer.digits_to_rgb32(X, content=40)


def test_from_scratch_same_architecture_new_weights():
    cnn = _pretrained(batch_norm=True)
    with torch.no_grad():
        cnn.features[1].running_mean.fill_(3.0)  # pretend pretraining moved the statistics
    torch.manual_seed(5)
    model = transfer.from_scratch(cnn, num_classes=10)
    pretrained = transfer.from_pretrained(cnn, num_classes=10, mode="finetune")
    assert [tuple(v.shape) for v in model.state_dict().values()] == \
        [tuple(v.shape) for v in pretrained.state_dict().values()]
    assert not torch.equal(model.features[0].weight, cnn.features[0].weight)
    assert torch.equal(model.features[1].running_mean, torch.zeros(16))  # statistics reset too
    assert all(p.requires_grad for p in model.parameters())
