"""Training loop behaviour: modes, schedules, early stopping, checkpoints."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from labkit import models, train


def toy_loaders(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long()
    ds = TensorDataset(X, y)
    return DataLoader(ds, batch_size=32, shuffle=True, generator=g), DataLoader(ds, batch_size=64)


def test_fit_learns_a_separable_problem():
    model = models.MLP(4, hidden=(16,), num_classes=2)
    history = train.fit(model, *toy_loaders(), train.TrainConfig(epochs=15, lr=0.05, progress=False))
    assert history[-1]["val_acc"] > 0.9
    assert history[-1]["train_loss"] < history[0]["train_loss"]


class ModeSpy(nn.Module):
    """Records the training flag seen on every forward call."""

    def __init__(self):
        super().__init__()
        self.lin, self.modes = nn.Linear(4, 2), []

    def forward(self, x):
        self.modes.append(self.training)
        return self.lin(x)


def test_every_epoch_trains_in_train_mode_and_validates_in_eval_mode():
    spy = ModeSpy()
    train_loader, val_loader = toy_loaders(n=64)
    train.fit(spy, train_loader, val_loader, train.TrainConfig(epochs=3, progress=False))
    per_epoch = len(train_loader) + len(val_loader)
    for epoch in range(3):
        modes = spy.modes[epoch * per_epoch:(epoch + 1) * per_epoch]
        assert all(modes[:len(train_loader)]) and not any(modes[len(train_loader):])


def test_step_lr_decays_and_never_resets():
    lrs = [train.step_lr(0.1, e, step_size=2, gamma=0.5) for e in range(6)]
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert all(b <= a for a, b in zip(lrs, lrs[1:]))


def test_fit_schedule_matches_closed_form():
    model = models.MLP(4, hidden=(8,), num_classes=2)
    cfg = train.TrainConfig(epochs=5, lr=0.1, optimizer="sgd", step_size=2, gamma=0.5, progress=False)
    history = train.fit(model, *toy_loaders(), cfg)
    assert [h["lr"] for h in history] == pytest.approx([train.step_lr(0.1, e, 2, 0.5) for e in range(5)])


def test_early_stopping_restores_best_weights():
    model = models.MLP(4, hidden=(8,), num_classes=2)
    # an absurd learning rate makes val loss blow up after the first epochs
    cfg = train.TrainConfig(epochs=30, lr=5.0, optimizer="sgd", patience=2, progress=False)
    history = train.fit(model, *toy_loaders(), cfg)
    best = min(history, key=lambda h: h["val_loss"])
    assert len(history) < 30
    assert train.evaluate(model, toy_loaders()[1])[0] == pytest.approx(best["val_loss"], rel=1e-5)


def test_unknown_optimizer_and_frozen_model():
    model = models.MLP(4, hidden=(8,), num_classes=2)
    with pytest.raises(ValueError, match="optimizer must be"):
        train.make_optimizer(model, train.TrainConfig(optimizer="lbfgs"))
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train.make_optimizer(model, train.TrainConfig())


def test_empty_loader_raises():
    model = models.MLP(4, hidden=(8,), num_classes=2)
    empty = DataLoader(TensorDataset(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(ValueError, match="no samples"):
        train.evaluate(model, empty)


def test_checkpoint_round_trip(tmp_path):
    model = models.SmallCNN(in_channels=1, image_size=8)
    opt = torch.optim.Adam(model.parameters())
    path = train.save_checkpoint(tmp_path / "cnn.pt", model, opt, epoch=3, config=train.TrainConfig())
    fresh = models.SmallCNN(in_channels=1, image_size=8)
    ckpt = train.load_checkpoint(path, fresh, torch.optim.Adam(fresh.parameters()))
    assert ckpt["epoch"] == 3
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(model.eval()(x), fresh.eval()(x))


def test_checkpoint_from_other_architecture_is_named(tmp_path):
    path = train.save_checkpoint(tmp_path / "cnn.pt", models.SmallCNN(in_channels=1, image_size=8))
    with pytest.raises(train.CheckpointError, match="saved from a SmallCNN.*shape mismatches"):
        train.load_checkpoint(path, models.SmallCNN(in_channels=3, image_size=32))
    with pytest.raises(train.CheckpointError, match="does not match this MLP"):
        train.load_checkpoint(path, models.MLP(64))


def test_checkpoint_loading_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": train.TrainConfig()}, path)  # a custom class needs full unpickling
    with pytest.raises(Exception, match="[Ww]eights only"):
        train.load_checkpoint(path, models.MLP(4))


def test_predict_returns_labels_and_probabilities():
    model = models.MLP(4, hidden=(8,), num_classes=3)
    labels, probs = train.predict(model, torch.randn(10, 4), batch_size=3)
    assert labels.shape == (10,) and probs.shape == (10, 3)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(10))
    with pytest.raises(ValueError, match="empty"):
        train.predict(model, torch.zeros(0, 4))


def test_summarize():
    history = [dict(epoch=0, train_acc=0.5, val_acc=0.6, seconds=1.0), dict(epoch=1, train_acc=0.9, val_acc=0.7, seconds=2.0)]
    row = train.summarize(history)
    assert row["gap"] == pytest.approx(0.2) and row["best_val_acc"] == 0.7 and row["seconds"] == 3.0
    with pytest.raises(ValueError):
        train.summarize([])


def test_fit_tensors_is_seeded_learns_and_returns_eval_mode():
    from labkit.models import MLP
    from labkit.train import fit_tensors, model_accuracy

    g = torch.Generator().manual_seed(0)
    X = torch.randn(256, 4, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long()

    def run():
        torch.manual_seed(0)
        return fit_tensors(MLP(4, hidden=(16,), num_classes=2), X, y, epochs=20, lr=1e-2, batch_size=32, seed=3)

    a, b = run(), run()
    assert not a.training
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))  # same seed, same weights
    assert model_accuracy(a, X, y) > 0.9
