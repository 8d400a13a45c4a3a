"""train.fit_split: `fit` on a Split's training and validation parts, the same run as the loaders written out."""
import torch

from labkit import data, models, train


def _split(n: int = 96, seed: int = 0) -> data.Split:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 8, generator=g)
    y = (X[:, 0] > 0).long()                      # learnable: the sign of the first feature
    third = n // 3
    return data.Split(X[:third * 2], y[:third * 2], X[third * 2:], y[third * 2:], X[:4], y[:4], ("neg", "pos"))


def _model() -> torch.nn.Module:
    train.set_seed(0)
    return models.MLP(8, (16,), num_classes=2)


def test_fit_split_is_fit_on_the_split_loaders():
    split, config = _split(), train.TrainConfig(epochs=3, lr=1e-2, seed=5, progress=False)
    by_hand, wrapped = _model(), _model()
    expected = train.fit(by_hand, data.make_loader(split.X_train, split.y_train, 16, shuffle=True, seed=5),
                         data.make_loader(split.X_val, split.y_val, 512), config)
    history = train.fit_split(wrapped, split, config, batch_size=16)
    assert [h["val_loss"] for h in history] == [h["val_loss"] for h in expected]
    assert all(torch.equal(a, b) for a, b in zip(by_hand.state_dict().values(), wrapped.state_dict().values()))


def test_fit_split_validates_on_the_validation_part_and_learns():
    split = _split(240)
    model = _model()
    history = train.fit_split(model, split, train.TrainConfig(epochs=15, lr=1e-2, progress=False), batch_size=32)
    assert len(history) == 15
    assert history[-1]["val_acc"] == train.evaluate(model, data.make_loader(split.X_val, split.y_val, 512))[1]
    assert history[-1]["val_acc"] > 0.8 and history[-1]["val_loss"] < history[0]["val_loss"]
