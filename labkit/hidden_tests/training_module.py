"""Hidden tests for training_module: a batch bigger than the data, uneven batches, optimizer state in checkpoints."""
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from labkit import train as reference
from labkit.exercises.training_module import _data, _Spy


def test_hidden_one_short_batch_and_uneven_evaluate(sub):
    """batch_size > rows gives one batch; evaluate over batches of 7 matches labkit.train.evaluate"""
    X, y = _data(n=5)
    batches = list(sub.make_loader(X, y, batch_size=32))
    assert [len(b[0]) for b in batches] == [5], f"5 rows with batch_size=32 gave batches {[len(b[0]) for b in batches]}"
    model = _Spy(seed=3)
    loader = DataLoader(TensorDataset(*_data(n=40, seed=2)), batch_size=7)  # 7 x 5 + 5: uneven
    loss, acc = sub.evaluate(model, loader)
    want_loss, want_acc = reference.evaluate(model, loader)
    assert abs(loss - want_loss) < 1e-5 and abs(acc - want_acc) < 1e-9, (
        f"evaluate gave ({loss:.5f}, {acc:.3f}), expected ({want_loss:.5f}, {want_acc:.3f}): weight each batch's "
        "mean loss by its size")


def test_hidden_checkpoint_keeps_optimizer_and_epoch(sub):
    """a checkpoint saved with an optimizer restores its state (Adam moments) and the epoch"""
    model = _Spy(seed=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    sub.train_one_epoch(model, DataLoader(TensorDataset(*_data()), batch_size=16), optimizer)
    path = Path(tempfile.mkdtemp(prefix="training_module-")) / "ckpt.pt"
    sub.save_checkpoint(path, model, optimizer, epoch=3)
    fresh = _Spy(seed=5)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=0.01)
    checkpoint = sub.load_checkpoint(path, fresh, fresh_opt)
    assert checkpoint["epoch"] == 3, f"epoch {checkpoint.get('epoch')!r}, expected 3"
    for p, q in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(p, q), "the model's weights were not restored"
    state, restored = optimizer.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert state.keys() == restored.keys() and all(
        torch.equal(state[k]["exp_avg"], restored[k]["exp_avg"]) for k in state), "Adam's moments were not restored"


TESTS = (test_hidden_one_short_batch_and_uneven_evaluate, test_hidden_checkpoint_keeps_optimizer_and_epoch)
