"""Exercise: loader, train/eval loops and safe checkpoints, graded on a tiny MLP against labkit.train."""
import copy
import inspect
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from labkit import train as reference  # the oracle: imported before the submission, which may not import it
from labkit.grading.exercise import Exercise

TASK = """
Write the training module every later notebook leans on:

- `make_loader(X, y, batch_size=32, shuffle=False, seed=0)` → a `DataLoader` over `(X, y)`; with `shuffle=True`
  the order depends on `seed` only (not on the global random state), without it the rows keep their order.
- `train_one_epoch(model, loader, optimizer, loss_fn=cross_entropy)` → float: one pass in **train mode** (set
  it every epoch: evaluation switched it off), one optimizer step per batch; returns the mean loss **per
  sample** (weight each batch's loss by its size: the last batch may be smaller).
- `evaluate(model, loader, loss_fn=cross_entropy)` → `(mean loss per sample, accuracy)` in **eval mode** and
  without tracking gradients.
- `save_checkpoint(path, model, optimizer=None, epoch=0)` writes `{"model": state dict, "optimizer": state dict
  or None, "epoch": epoch}` with `torch.save`; `load_checkpoint(path, model, optimizer=None)` loads it into the
  model (and optimizer) and returns the dict. Load with `weights_only=True`: a checkpoint is a pickle, and a
  pickle can run code; a file holding anything but tensors and plain containers must be refused.

Graded on a tiny MLP: your step matches `labkit.train`'s (same loss, same weights after an epoch), the loss
falls and the weights move over epochs, a spy layer records `model.training` and whether gradients were on at
each forward, the checkpoint round trip restores weights, optimizer state and epoch, and a checkpoint that
carries a pickled object is refused without running it. Do not import `labkit.train`. Taught in notebook 01
§3 "Training step by step" and §6 "Checkpoints", and notebook 03 §3 "train() and eval(): why the mode matters".
"""

STUB = '''
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def make_loader(X: torch.Tensor, y: torch.Tensor, batch_size: int = 32, shuffle: bool = False,
                seed: int = 0) -> DataLoader:
    """A DataLoader over (X, y); with shuffle=True the order depends only on seed."""
    raise NotImplementedError("make_loader")


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    loss_fn=nn.functional.cross_entropy) -> float:
    """One pass in train mode, one optimizer step per batch; returns the mean loss per sample."""
    raise NotImplementedError("train_one_epoch")


def evaluate(model: nn.Module, loader: DataLoader, loss_fn=nn.functional.cross_entropy) -> tuple[float, float]:
    """(mean loss per sample, accuracy) in eval mode, without tracking gradients."""
    raise NotImplementedError("evaluate")


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    epoch: int = 0) -> None:
    """Save {"model": state dict, "optimizer": state dict or None, "epoch": epoch} with torch.save."""
    raise NotImplementedError("save_checkpoint")


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Load a checkpoint safely into model (and optimizer, if given); return the checkpoint dict."""
    raise NotImplementedError("load_checkpoint")
'''

_FLAG = "_labkit_checkpoint_payload_ran"  # set on the sys module when a malicious checkpoint's payload runs
_PAYLOAD = f"import sys; sys.__dict__.setdefault({_FLAG!r}, []).append(True)"


def _payload_ran() -> list:
    """The flag's list, emptied: non-empty means the payload ran since the last call."""
    return sys.__dict__.pop(_FLAG, [])


class _Exploit:
    """Unpickling this runs _PAYLOAD through exec: any code could run in its place.

    Its pickle names only builtins.exec, so unpickling needs no test module (the grader hides those).
    """

    def __reduce__(self):
        return exec, (_PAYLOAD,)


class _Spy(nn.Module):
    """A tiny MLP with dropout that records the mode and grad switch at every forward."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
        self.modes, self.grad_on = [], []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        self.grad_on.append(torch.is_grad_enabled())
        return self.net(x)  # (N, 3)


def _data(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three separable blobs in 4-D."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    return torch.randn(n, 4, generator=g) * 0.5 + nn.functional.one_hot(y, 4).float() * 2, y


def _plain_loader(batch_size: int = 16) -> DataLoader:
    return DataLoader(TensorDataset(*_data()), batch_size=batch_size)  # 40 rows: batches of 16, 16, 8


def test_make_loader(sub):
    """batches cover every row once; shuffle=False keeps order; shuffle=True depends on seed only"""
    X, y = torch.arange(30.0).unsqueeze(1), torch.arange(30)
    batches = list(sub.make_loader(X, y, batch_size=8))
    assert [len(b[0]) for b in batches] == [8, 8, 8, 6], "30 rows in batches of 8 should give 8, 8, 8, 6"
    assert torch.equal(torch.cat([b[1] for b in batches]), y), "shuffle=False must keep the rows in order"
    orders = []
    for seed, global_seed in [(0, 1), (0, 2), (1, 1)]:
        torch.manual_seed(global_seed)
        orders.append(torch.cat([b[1] for b in sub.make_loader(X, y, batch_size=8, shuffle=True, seed=seed)]))
    assert sorted(orders[0].tolist()) == list(range(30)), "a shuffled epoch must still visit every row once"
    assert torch.equal(orders[0], orders[1]), "with shuffle=True the order must depend on seed only (use a Generator)"
    assert not torch.equal(orders[0], orders[2]), "different seeds should give different orders"


def test_train_step_matches_reference(sub):
    """same loss and same weights after an epoch as labkit.train.train_one_epoch"""
    mine, ref = _Spy(), _Spy()
    mine.net[2].p = ref.net[2].p = 0.0  # dropout off, so both see the same forward passes
    loss = sub.train_one_epoch(mine, _plain_loader(), torch.optim.SGD(mine.net.parameters(), lr=0.1))
    want, _ = reference.train_one_epoch(ref, _plain_loader(), torch.optim.SGD(ref.net.parameters(), lr=0.1))
    for (name, p), q in zip(mine.net.named_parameters(), ref.net.parameters()):
        assert torch.allclose(p, q, atol=1e-6), (f"{name} differs after one epoch: one zero_grad, backward and "
                                                 "optimizer step per batch (gradients must not accumulate)")
    assert isinstance(loss, float), f"train_one_epoch must return the mean loss as a float, got {type(loss).__name__}"
    assert abs(loss - want) < 1e-5, (f"mean loss {loss:.5f}, expected {want:.5f}: weight each batch's loss by its "
                                     "size (40 rows in batches of 16, 16, 8), and compute it before the step")


def test_train_mode_every_epoch(sub):
    """train_one_epoch puts the model in train mode, even after evaluation switched it off"""
    model = _Spy()
    model.eval()
    sub.train_one_epoch(model, _plain_loader(), torch.optim.SGD(model.parameters(), lr=0.1))
    assert model.modes and all(model.modes), (f"forward ran with model.training={model.modes}: call model.train() "
                                              "at the start of every epoch (dropout and batch norm depend on it)")
    assert all(model.grad_on), "training needs gradients: do not wrap the training pass in no_grad"


def test_loss_falls_and_weights_move(sub):
    """over 8 epochs the loss falls, every parameter moves and accuracy rises"""
    model = _Spy()
    before = copy.deepcopy(model.state_dict())
    loader = sub.make_loader(*_data(), batch_size=8, shuffle=True, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = [sub.train_one_epoch(model, loader, optimizer) for _ in range(8)]
    assert losses[-1] < 0.5 * losses[0], f"the loss should halve in 8 epochs; got {[round(v, 3) for v in losses]}"
    frozen = [k for k, v in model.state_dict().items() if torch.equal(v, before[k])]
    assert not frozen, f"these parameters never changed: {frozen}"
    _, acc = sub.evaluate(model, sub.make_loader(*_data(seed=1), batch_size=16))
    assert acc >= 0.9, f"accuracy {acc:.2f} on fresh blobs after training; expected >= 0.9"


def test_evaluate_eval_mode_no_grad(sub):
    """evaluate runs in eval mode without gradients, changes nothing, and matches labkit.train.evaluate"""
    model = _Spy()
    model.train()
    before = copy.deepcopy(model.state_dict())
    loss, acc = sub.evaluate(model, _plain_loader())
    assert model.modes and not any(model.modes), (f"forward ran with model.training={model.modes}: call "
                                                  "model.eval() (dropout stays on in train mode)")
    assert not any(model.grad_on), "wrap evaluation in torch.no_grad(): tracking gradients wastes memory and time"
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()), "evaluate must not change weights"
    want_loss, want_acc = reference.evaluate(model, _plain_loader())
    assert abs(float(loss) - want_loss) < 1e-5, f"mean loss {float(loss):.5f}, expected {want_loss:.5f} (per sample)"
    assert abs(float(acc) - want_acc) < 1e-9, f"accuracy {float(acc):.4f}, expected {want_acc:.4f}"


def test_checkpoint_round_trip(sub):
    """weights, optimizer state and epoch come back from a saved checkpoint"""
    model = _Spy()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    sub.train_one_epoch(model, _plain_loader(), optimizer)
    with tempfile.TemporaryDirectory() as tmp:
        sub.save_checkpoint(Path(tmp) / "ckpt.pt", model, optimizer, epoch=7)
        fresh = _Spy(seed=1)
        fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
        ckpt = sub.load_checkpoint(Path(tmp) / "ckpt.pt", fresh, fresh_opt)
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), f"{k} was not restored by load_checkpoint"
    assert ckpt["epoch"] == 7, f"the checkpoint's epoch is {ckpt.get('epoch')!r}, saved 7"
    state, restored = optimizer.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert restored and all(torch.equal(state[i]["exp_avg"], restored[i]["exp_avg"]) for i in state), (
        "the optimizer state (Adam's moments) was not restored: load it with optimizer.load_state_dict")


def test_load_refuses_pickled_code(sub):
    """a checkpoint that carries a pickled Python object is refused, and its code never runs"""
    model = _Spy()
    with tempfile.TemporaryDirectory() as tmp:
        sub.save_checkpoint(Path(tmp) / "good.pt", model, None, epoch=1)
        sub.load_checkpoint(Path(tmp) / "good.pt", _Spy(seed=1))
        torch.save({"model": model.state_dict(), "optimizer": None, "epoch": _Exploit()}, Path(tmp) / "evil.pt")
        _payload_ran()
        try:
            sub.load_checkpoint(Path(tmp) / "evil.pt", _Spy(seed=1))
            refused = False
        except NotImplementedError:
            raise
        except Exception:
            refused = True
    assert not _payload_ran(), "loading the checkpoint ran code hidden in it: use torch.load(..., weights_only=True)"
    assert refused, "a checkpoint holding a pickled object must be refused (weights_only=True raises)"


def test_written_by_hand(sub):
    """the loops are your own code, not labkit.train"""
    sub.make_loader(*_data(), batch_size=8)
    assert "labkit" not in inspect.getsource(sub), "write the module yourself: labkit.train is the grader's oracle"


EXERCISE = Exercise(
    name="training_module", title="Exercise · A training module", task=TASK, stub=STUB,
    tests=(test_make_loader, test_train_step_matches_reference, test_train_mode_every_epoch,
           test_loss_falls_and_weights_move, test_evaluate_eval_mode_no_grad, test_checkpoint_round_trip,
           test_load_refuses_pickled_code, test_written_by_hand),
    protected_modules=('labkit.train',),
)
