"""Knowledge distillation: a small student learns from a large teacher's temperature-softened outputs."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from labkit.data import minibatches
from labkit.train import set_seed

UNLABELLED = -1  # label of an example the student learns from the teacher only


@dataclass(frozen=True)
class DistillConfig:
    """Hyperparameters of `distill`."""
    temperature: float = 4.0   # softens both distributions; > 1 exposes the teacher's "dark knowledge"
    alpha: float = 0.9         # weight of the soft (teacher) term; 1 - alpha goes to the hard-label term
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    seed: int = 0


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor | None = None,
                      temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, y), averaged over the batch.

    p_T = softmax(logits / T). The T^2 keeps the soft term's gradients on the scale of the hard term's as T
    grows (Hinton et al., 2015). Labels equal to UNLABELLED (-1), or y=None, contribute no hard term.
    Taught in 06_model_compression.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(f"student and teacher logits must both be (N, K); got {tuple(student_logits.shape)} "
                         f"and {tuple(teacher_logits.shape)}")
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)  # (N, K)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    soft = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * temperature ** 2
    if y is None or alpha == 1.0 or bool((y == UNLABELLED).all()):
        return alpha * soft
    hard = F.cross_entropy(student_logits, y, ignore_index=UNLABELLED)  # mean over the labelled rows
    return alpha * soft + (1 - alpha) * hard


def keep_labels(y: torch.Tensor, n_per_class: int, seed: int = 0) -> torch.Tensor:
    """A copy of y with only n_per_class random labels per class kept, the rest set to UNLABELLED (-1).

    Simulates plentiful inputs and scarce labels. Taught in 06_model_compression.
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1; got {n_per_class}")
    generator = torch.Generator().manual_seed(seed)
    out = torch.full_like(y, UNLABELLED)
    for c in y.unique():
        pool = (y == c).nonzero().flatten()
        if len(pool) < n_per_class:
            raise ValueError(f"class {int(c)} has {len(pool)} examples, asked to keep {n_per_class}")
        picked = pool[torch.randperm(len(pool), generator=generator)[:n_per_class]]
        out[picked] = y[picked]
    return out


@torch.no_grad()
def logits_of(model: nn.Module, X: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Eval-mode logits (N, K) of a model over X, in batches."""
    if len(X) == 0:
        raise ValueError("logits_of got an empty X")
    model.eval()
    return torch.cat([model(xb) for (xb,) in minibatches(X, batch_size=batch_size)])


def distill(student: nn.Module, teacher_logits: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
            config: DistillConfig = DistillConfig()) -> list[float]:
    """Train `student` on X against precomputed teacher logits (and labels y, UNLABELLED = -1 allowed).

    Precomputing the teacher's logits once makes an epoch cost what plain training costs. Returns the mean
    loss per epoch. Taught in 06_model_compression.
    """
    if not (len(X) == len(y) == len(teacher_logits) > 0):
        raise ValueError(f"X, y and teacher_logits must be non-empty and equally long; got {len(X)}, {len(y)}, "
                         f"{len(teacher_logits)}")
    set_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(student.parameters(), lr=config.lr)
    losses = []
    for _ in range(config.epochs):
        student.train()
        total = 0.0
        for xb, tb, yb in minibatches(X, teacher_logits, y, batch_size=config.batch_size, shuffle=True,
                                      generator=generator):
            loss = distillation_loss(student(xb), tb, yb, config.temperature, config.alpha)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(xb)
        losses.append(total / len(X))
    student.eval()
    return losses


@torch.no_grad()
def agreement(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """Fraction of inputs where student and teacher predict the same class. Taught in 06_model_compression."""
    if student_logits.shape != teacher_logits.shape or len(student_logits) == 0:
        raise ValueError(f"need two non-empty (N, K) logit tensors of one shape; got {tuple(student_logits.shape)} "
                         f"and {tuple(teacher_logits.shape)}")
    return (student_logits.argmax(dim=1) == teacher_logits.argmax(dim=1)).float().mean().item()


@torch.no_grad()
def kl_to_teacher(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean KL(teacher || student) of the softmax outputs at `temperature`, in nats. Taught in 06_model_compression."""
    return (distillation_loss(student_logits, teacher_logits, None, temperature, alpha=1.0)
            / temperature ** 2).item()
