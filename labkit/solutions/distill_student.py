import torch
from torch import nn
import torch.nn.functional as F


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor,
                      temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE over labelled rows (y == -1: unlabelled)."""
    T = temperature
    log_p_student = F.log_softmax(student_logits / T, dim=1)  # (N, K)
    p_teacher = F.softmax(teacher_logits.detach() / T, dim=1)  # detached: the teacher is not trained
    soft = F.kl_div(log_p_student, p_teacher, reduction="batchmean") * T ** 2  # T^2 restores the gradient scale
    labelled = y != -1
    if alpha == 1.0 or not labelled.any():
        return alpha * soft
    hard = F.cross_entropy(student_logits[labelled], y[labelled])  # mean over labelled rows only
    return alpha * soft + (1 - alpha) * hard


def train_student(student: nn.Module, teacher: nn.Module, X: torch.Tensor, y: torch.Tensor, epochs: int = 30,
                  temperature: float = 4.0, alpha: float = 0.9, lr: float = 3e-3, batch_size: int = 64) -> nn.Module:
    """Train student on X against the teacher's logits (soft) and y (hard, -1 = unlabelled); return it in eval mode."""
    teacher.eval()
    with torch.no_grad():
        soft_targets = teacher(X)  # once: the teacher is fixed, so its logits never change
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        student.train()
        order = torch.randperm(len(X), generator=generator)
        for i in range(0, len(X), batch_size):
            idx = order[i:i + batch_size]
            loss = distillation_loss(student(X[idx]), soft_targets[idx], y[idx], temperature, alpha)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return student.eval()
