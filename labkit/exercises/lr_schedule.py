"""Exercise: a step learning-rate schedule, in closed form and as a scheduler, graded against torch's StepLR."""
import inspect
import math
import random

import torch

from labkit.grading.exercise import Exercise

TASK = """
Write the step learning-rate schedule, **without `torch.optim.lr_scheduler`**:

- `step_lr(initial_lr, epoch, step_size, gamma)` → float: the rate for `epoch` (0-based), i.e. `initial_lr`
  multiplied by `gamma` once for every `step_size` epochs completed. `step_size < 1` raises `ValueError`.
- `StepSchedule(optimizer, step_size, gamma)`: remembers each param group's starting `lr`; `step()`, called
  once at the end of every epoch, sets every param group's `lr` for the next epoch. `step_size < 1` raises
  `ValueError`.

A step schedule only ever decays: it never jumps back to the initial rate (the classic bug decays "this
epoch's rate" from `initial_lr` again each time, so the rate resets).

Graded: both are compared epoch by epoch with `torch.optim.lr_scheduler.StepLR` over 200 random settings
(several param groups, up to 60 epochs), checked to never increase over 300 epochs, and to reject a bad
`step_size`. Taught in notebook 03 §5 "Optimizers and learning-rate schedules" (`A step schedule, and one that
resets`, notebooks/03_regularization_and_optimization.ipynb).
"""

STUB = '''
import torch


def step_lr(initial_lr: float, epoch: int, step_size: int, gamma: float) -> float:
    """The learning rate for `epoch` (0-based): initial_lr decayed by gamma every step_size epochs."""
    raise NotImplementedError("step_lr")


class StepSchedule:
    """Decays every param group's lr by gamma every step_size epochs; call step() once per epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, step_size: int, gamma: float = 0.1):
        raise NotImplementedError("StepSchedule.__init__")

    def step(self) -> None:
        """End of an epoch: set each param group's lr for the next one."""
        raise NotImplementedError("StepSchedule.step")
'''


def _settings(n: int = 200, seed: int = 0):
    """Random (initial lrs per param group, step_size, gamma, epochs)."""
    rng = random.Random(seed)
    for _ in range(n):
        lrs = [10 ** rng.uniform(-4, 0) for _ in range(rng.randint(1, 3))]
        yield lrs, rng.randint(1, 12), rng.uniform(0.05, 0.99), rng.randint(1, 60)


def _optimizer(lrs: list[float]) -> torch.optim.Optimizer:
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs])


def _lrs_per_epoch(optimizer: torch.optim.Optimizer, scheduler, epochs: int) -> list[list[float]]:
    """The lr of every param group during each epoch, stepping the scheduler at each epoch's end."""
    seen = []
    for _ in range(epochs):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return seen


def _torch_lrs(lrs: list[float], step_size: int, gamma: float, epochs: int) -> list[list[float]]:
    optimizer = _optimizer(lrs)
    return _lrs_per_epoch(optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma), epochs)


def test_step_lr_matches_torch(sub):
    """step_lr gives StepLR's rate at every epoch"""
    for lrs, step_size, gamma, epochs in _settings():
        want = _torch_lrs(lrs[:1], step_size, gamma, epochs)
        for epoch in range(epochs):
            got = sub.step_lr(lrs[0], epoch, step_size, gamma)
            assert isinstance(got, float), f"step_lr must return a float, got {type(got).__name__}"
            assert math.isclose(got, want[epoch][0], rel_tol=1e-9), (
                f"step_lr({lrs[0]:.4g}, epoch={epoch}, step_size={step_size}, gamma={gamma:.3f}) = {got:.6g}; "
                f"StepLR uses {want[epoch][0]:.6g}")


def test_step_lr_never_resets(sub):
    """over 300 epochs the rate only goes down, once per step_size epochs"""
    for step_size, gamma in [(1, 0.9), (3, 0.5), (7, 0.95), (10, 0.99)]:
        lrs = [sub.step_lr(0.1, epoch, step_size, gamma) for epoch in range(300)]
        for epoch in range(1, 300):
            assert lrs[epoch] <= lrs[epoch - 1], (
                f"step_size={step_size}, gamma={gamma}: the rate went up from {lrs[epoch - 1]:.4g} (epoch "
                f"{epoch - 1}) to {lrs[epoch]:.4g} (epoch {epoch}); a step schedule never resets")
        decays = sum(b < a for a, b in zip(lrs, lrs[1:]))
        assert decays == 299 // step_size, (f"step_size={step_size}: the rate should drop {299 // step_size} "
                                             f"times in 300 epochs (every {step_size}), it dropped {decays} times")


def test_step_lr_rejects_bad_step_size(sub):
    """step_size < 1 raises ValueError"""
    for bad in (0, -2):
        try:
            sub.step_lr(0.1, 5, bad, 0.5)
        except ValueError:
            continue
        raise AssertionError(f"step_lr(0.1, 5, step_size={bad}, 0.5) must raise ValueError")


def test_step_schedule_matches_torch(sub):
    """StepSchedule sets every param group's lr exactly as StepLR does, epoch by epoch"""
    for lrs, step_size, gamma, epochs in _settings(seed=1):
        optimizer = _optimizer(lrs)
        got = _lrs_per_epoch(optimizer, sub.StepSchedule(optimizer, step_size, gamma), epochs)
        want = _torch_lrs(lrs, step_size, gamma, epochs)
        for epoch, (g, w) in enumerate(zip(got, want)):
            assert all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(g, w)), (
                f"initial lrs {[f'{lr:.4g}' for lr in lrs]}, step_size={step_size}, gamma={gamma:.3f}: at epoch "
                f"{epoch} the param groups have lr {[f'{v:.4g}' for v in g]}, StepLR gives {[f'{v:.4g}' for v in w]}")


def test_step_schedule_never_resets_and_rejects_bad_step_size(sub):
    """300 steps never raise the rate; step_size < 1 raises ValueError"""
    optimizer = _optimizer([0.1])
    schedule = sub.StepSchedule(optimizer, 4, 0.9)
    lrs = _lrs_per_epoch(optimizer, schedule, 300)
    ups = [e for e in range(1, 300) if lrs[e][0] > lrs[e - 1][0]]
    assert not ups, f"step_size=4, gamma=0.9: the rate went up at epochs {ups[:5]}; a step schedule never resets"
    assert math.isclose(lrs[-1][0], 0.1 * 0.9 ** (299 // 4), rel_tol=1e-9), (
        f"after 299 steps the rate should be 0.1 * 0.9**74 = {0.1 * 0.9 ** 74:.4g}, got {lrs[-1][0]:.4g}")
    try:
        sub.StepSchedule(_optimizer([0.1]), 0, 0.5)
    except ValueError:
        return
    raise AssertionError("StepSchedule(optimizer, step_size=0, gamma=0.5) must raise ValueError")


def test_written_by_hand(sub):
    """the schedule is your own code, not torch.optim.lr_scheduler"""
    assert math.isclose(sub.step_lr(1.0, 4, 2, 0.5), 0.25), "step_lr(1.0, epoch=4, step_size=2, gamma=0.5) != 0.25"
    assert "lr_scheduler" not in inspect.getsource(sub), (
        "write the schedule yourself: the grader uses torch.optim.lr_scheduler only as the oracle")


EXERCISE = Exercise(
    name="lr_schedule", title="Exercise · A step learning-rate schedule", task=TASK, stub=STUB,
    tests=(test_step_lr_matches_torch, test_step_lr_never_resets, test_step_lr_rejects_bad_step_size,
           test_step_schedule_matches_torch, test_step_schedule_never_resets_and_rejects_bad_step_size,
           test_written_by_hand),
    protected_modules=('labkit.train',),
)
