"""Models: shapes, computed flatten size, clear errors on bad input."""
import pytest
import torch
from torch import nn

from labkit import models


@pytest.mark.parametrize("image_size,flat", [(8, 32 * 2 * 2), (32, 32 * 8 * 8), (28, 32 * 7 * 7)])
def test_cnn_flatten_size_is_computed(image_size, flat):
    model = models.SmallCNN(in_channels=3, image_size=image_size)
    assert model.flat_features == flat  # 32x32 after two 2x2 pools is 8x8, not 28x28
    assert model(torch.randn(5, 3, image_size, image_size)).shape == (5, 10)


def test_cnn_rejects_wrong_shape_and_dtype():
    model = models.SmallCNN(in_channels=1, image_size=8)
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\); got \(4, 1, 32, 32\)"):
        model(torch.randn(4, 1, 32, 32))
    with pytest.raises(ValueError, match="floating-point"):
        model(torch.zeros(4, 1, 8, 8, dtype=torch.uint8))


def test_count_parameters_matches_manual_and_frozen():
    model = models.MLP(in_features=4, hidden=(3,), num_classes=2)
    assert models.count_parameters(model) == (4 * 3 + 3) + (3 * 2 + 2)
    model.net[1].weight.requires_grad_(False)
    assert models.count_parameters(model, trainable_only=True) == 3 + 3 * 2 + 2


def test_mlp_rejects_wrong_feature_count():
    with pytest.raises(ValueError, match="expected 64 features"):
        models.MLP(in_features=64)(torch.randn(2, 10))


def test_dropconnect_drops_weights_in_train_only():
    layer = models.DropConnectLinear(50, 50, p=0.5)
    x = torch.randn(8, 50)
    layer.eval()
    assert torch.equal(layer(x), nn.functional.linear(x, layer.weight, layer.bias))
    layer.train()
    torch.manual_seed(0)
    assert not torch.allclose(layer(x), layer.eval()(x))
    with pytest.raises(ValueError):
        models.DropConnectLinear(2, 2, p=1.0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnn_ignores_padding(cell):
    torch.manual_seed(0)
    model = models.RNNClassifier(vocab_size=20, cell=cell).eval()
    ids = torch.tensor([[5, 6, 7, 0, 0]])
    padded_more = torch.tensor([[5, 6, 7, 0, 0, 0, 0, 0]])
    torch.testing.assert_close(model(ids), model(padded_more))


def test_rnn_errors():
    model = models.RNNClassifier(vocab_size=10)
    with pytest.raises(IndexError, match="outside the vocabulary"):
        model(torch.tensor([[3, 12]]))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        model(torch.tensor([3, 4]))
    with pytest.raises(ValueError, match="cell must be"):
        models.RNNClassifier(vocab_size=10, cell="transformer")


def test_bag_of_words_is_order_blind():
    model = models.BagOfWords(vocab_size=10)
    a, b = torch.tensor([[2, 3, 4]]), torch.tensor([[4, 2, 3]])
    torch.testing.assert_close(model(a), model(b))


def test_seq2seq_shapes_and_generate():
    model = models.Seq2Seq(vocab_size=12)
    src, tgt = torch.randint(2, 12, (3, 5)), torch.randint(2, 12, (3, 4))
    assert model(src, tgt).shape == (3, 4, 12)
    assert model.generate(src, max_len=6).shape == (3, 6)


def test_size_mb():
    model = nn.Linear(1000, 1000)  # 1,001,000 float32 = 4.004 MB
    assert models.size_mb(model) == pytest.approx(4.004)
