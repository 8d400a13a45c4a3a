class StepSchedule:
    """Multiply each parameter group's learning rate by gamma every step_size epochs."""

    def __init__(self, optimizer, step_size, gamma):
        self.optimizer, self.step_size, self.gamma = optimizer, step_size, gamma
        self.epoch = 0

    def step(self):
        """Call once at the end of every epoch."""
        self.epoch += 1
        if self.epoch % self.step_size == 0:
            for group in self.optimizer.param_groups:
                group["lr"] = group["lr"] * self.gamma  # between decays the rate is left as it is
