import torch


def step_lr(initial_lr: float, epoch: int, step_size: int, gamma: float) -> float:
    """The learning rate for `epoch` (0-based): initial_lr decayed by gamma every step_size epochs."""
    if step_size < 1:
        raise ValueError(f"step_size must be >= 1; got {step_size}")
    # count the completed steps from the start, never from "this epoch's rate": nothing can reset
    return float(initial_lr * gamma ** (epoch // step_size))


class StepSchedule:
    """Decays every param group's lr by gamma every step_size epochs; call step() once per epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, step_size: int, gamma: float = 0.1):
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1; got {step_size}")
        self.optimizer, self.step_size, self.gamma = optimizer, step_size, gamma
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.epoch = 0

    def step(self) -> None:
        """End of an epoch: set each param group's lr for the next one."""
        self.epoch += 1
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = step_lr(base_lr, self.epoch, self.step_size, self.gamma)
