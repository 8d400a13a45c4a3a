"""Find the bug: a step learning-rate schedule that forgets its decays."""
import torch
from torch import nn

from labkit.grading.exercise import Exercise

TASK = """
`StepSchedule(optimizer, step_size, gamma)` is a hand-written step decay: the training loop calls `.step()`
once at the end of every epoch, and the learning rate of every parameter group should be multiplied by
`gamma` every `step_size` epochs, like `torch.optim.lr_scheduler.StepLR`. With `lr=0.1, step_size=3,
gamma=0.5`, epochs 0-2 train at 0.1, epochs 3-5 at 0.05, epochs 6-8 at 0.025, and so on. Loss curves of
runs using it look as if the decay never sticks.

**Find the bug and fix it.** Print the learning rate after each `.step()` for ten epochs and compare it
with the sequence above. Learning-rate schedules are taught in 03_regularization_and_optimization
(`labkit.train.step_lr` is the closed form).
"""

STUB = '''
class StepSchedule:
    """Multiply each parameter group's learning rate by gamma every step_size epochs."""

    def __init__(self, optimizer, step_size, gamma):
        self.optimizer, self.step_size, self.gamma = optimizer, step_size, gamma
        self.initial_lrs = [group["lr"] for group in optimizer.param_groups]
        self.epoch = 0

    def step(self):
        """Call once at the end of every epoch."""
        self.epoch += 1
        for group, initial_lr in zip(self.optimizer.param_groups, self.initial_lrs):
            if self.epoch % self.step_size == 0:
                group["lr"] = group["lr"] * self.gamma
            else:
                group["lr"] = initial_lr
'''


def _lrs(make_scheduler, epochs: int = 10, lr: float = 0.1) -> list[float]:
    """The learning rate used in each epoch 0..epochs-1."""
    optimizer = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=lr)
    scheduler = make_scheduler(optimizer)
    used = []
    for _ in range(epochs):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return used


def _show(lrs: list[float]) -> str:
    return ", ".join(f"{lr:.4g}" for lr in lrs)


def test_matches_torch_step_lr(sub):
    """the per-epoch rates equal torch.optim.lr_scheduler.StepLR's for step_size=3, gamma=0.5"""
    got = _lrs(lambda opt: sub.StepSchedule(opt, step_size=3, gamma=0.5))
    want = _lrs(lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5))
    assert all(abs(g - w) < 1e-12 for g, w in zip(got, want)), (
        f"epochs 0-9 ran at\n  {_show(got)}\nexpected\n  {_show(want)}")


def test_rate_never_goes_back_up(sub):
    """with gamma < 1 the rate never increases from one epoch to the next"""
    lrs = _lrs(lambda opt: sub.StepSchedule(opt, step_size=2, gamma=0.1), epochs=8)
    for epoch in range(1, len(lrs)):
        assert lrs[epoch] <= lrs[epoch - 1] + 1e-15, (
            f"the rate went back up from {lrs[epoch - 1]:.4g} to {lrs[epoch]:.4g} at epoch {epoch} "
            f"(rates per epoch: {_show(lrs)})")


def test_first_decay_at_step_size(sub):
    """the rate stays at its initial value for the first step_size epochs, then is multiplied by gamma"""
    lrs = _lrs(lambda opt: sub.StepSchedule(opt, step_size=4, gamma=0.5), epochs=5, lr=0.2)
    assert lrs == [0.2, 0.2, 0.2, 0.2, 0.1], f"rates per epoch {_show(lrs)}, expected 0.2 x 4 then 0.1"


EXERCISE = Exercise(
    name="bug_lr_reset", title="Find the bug · The schedule that forgets", task=TASK, stub=STUB,
    tests=(test_matches_torch_step_lr, test_rate_never_goes_back_up, test_first_decay_at_step_size),
    kind="bug", bug_tests=("test_matches_torch_step_lr", "test_rate_never_goes_back_up"),
    protected_modules=('labkit.train',),
)
