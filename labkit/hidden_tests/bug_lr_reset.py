"""Hidden tests for bug_lr_reset: two parameter groups over many decays."""
import math

import torch
from torch import nn


def test_hidden_two_groups_match_step_lr(sub):
    """two param groups (lr 0.1 and 0.02), step_size=3, gamma=0.5, 20 epochs: StepLR's rates every epoch"""
    def lrs(make):
        optimizer = torch.optim.SGD([{"params": nn.Linear(2, 1).parameters(), "lr": 0.1},
                                     {"params": nn.Linear(2, 1).parameters(), "lr": 0.02}])
        scheduler, seen = make(optimizer), []
        for _ in range(20):
            seen.append([g["lr"] for g in optimizer.param_groups])
            optimizer.step()
            scheduler.step()
        return seen
    got = lrs(lambda o: sub.StepSchedule(o, 3, 0.5))
    want = lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5))
    for epoch, (g, w) in enumerate(zip(got, want)):
        assert all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(g, w)), f"epoch {epoch}: {g}, StepLR {w}"


TESTS = (test_hidden_two_groups_match_step_lr,)
