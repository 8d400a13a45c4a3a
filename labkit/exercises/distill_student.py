"""Exercise: the distillation loss and a short training loop that pulls a small student towards a teacher."""
import torch
from torch import nn
import torch.nn.functional as F

from labkit.grading.exercise import Exercise

TASK = """
A large teacher network answers well but too slowly for the service. Train a small student to imitate it.

- `distillation_loss(student_logits, teacher_logits, y, temperature, alpha)` → a scalar tensor:
  `alpha * T² * KL(p_teacher || p_student) + (1 - alpha) * CE(student_logits, y)`, where
  `p = softmax(logits / T)`, the KL is averaged over the batch, and the cross-entropy is the mean over the
  **labelled** rows only: a label of `-1` marks an unlabelled row (if no row is labelled, there is no hard
  term). Gradients must reach the student only (the teacher is not being trained).
- `train_student(student, teacher, X, y, epochs=30, temperature=4.0, alpha=0.9, lr=3e-3, batch_size=64)` →
  the trained student: mini-batches of X, the teacher's logits as soft targets, `y` as hard labels (most of
  them `-1`), an optimizer of your choice over the **student's** parameters. Return the student in eval mode.

Why T²: dividing logits by T shrinks the soft term's gradients by 1/T², so multiplying by T² keeps the two
terms' balance when you change T. Why T > 1: it lifts the teacher's small probabilities (which wrong classes
look alike), the "dark knowledge" a hard label does not carry.

Graded: the loss against `torch.nn.functional.kl_div` and `cross_entropy` at several T and alpha, its T²
scaling, the unlabelled rows, and that no gradient reaches the teacher; then a student trained with your loop
on 1500 inputs of which 20 are labelled must agree with the teacher on fresh inputs far more often than the
same student trained on the 20 labels alone, and its KL to the teacher must be at most half of that student's.
Runs on one thread within the time limit: keep the default 30 epochs cheap. Taught in notebook 06 §4
"Knowledge distillation".
"""

STUB = '''
import torch
from torch import nn
import torch.nn.functional as F


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor,
                      temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE over labelled rows (y == -1: unlabelled)."""
    raise NotImplementedError("distillation_loss")


def train_student(student: nn.Module, teacher: nn.Module, X: torch.Tensor, y: torch.Tensor, epochs: int = 30,
                  temperature: float = 4.0, alpha: float = 0.9, lr: float = 3e-3, batch_size: int = 64) -> nn.Module:
    """Train student on X against the teacher's logits (soft) and y (hard, -1 = unlabelled); return it in eval mode."""
    raise NotImplementedError("train_student")
'''

FEATURES, CLASSES = 10, 5


def _teacher() -> nn.Module:
    """A fixed random network: its decision regions are curved, so 20 labels cannot pin them down."""
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(FEATURES, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, CLASSES))
    with torch.no_grad():
        for p in teacher.parameters():
            p.mul_(2.0)
        for p in teacher[4].parameters():
            p.mul_(3.0)  # confident logits: T = 4 still leaves the soft targets informative
    return teacher.eval()


def _student(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, CLASSES))


def _inputs(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, FEATURES, generator=torch.Generator().manual_seed(seed))


def _reference_loss(s, t, y, T, alpha):
    soft = F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction="batchmean") * T * T
    labelled = y != -1
    hard = F.cross_entropy(s[labelled], y[labelled]) if labelled.any() else torch.zeros(())
    return alpha * soft + (1 - alpha) * hard


def _logits(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, CLASSES, generator=g) * 3, torch.randn(n, CLASSES, generator=g) * 3, torch.arange(n) % CLASSES


def test_loss_matches_kl_div_and_cross_entropy(sub):
    """equals alpha*T^2*kl_div + (1-alpha)*cross_entropy for several temperatures and alphas"""
    s, t, y = _logits()
    for T in (1.0, 2.0, 5.0):
        for alpha in (0.0, 0.5, 0.9, 1.0):
            got, want = float(sub.distillation_loss(s, t, y, T, alpha)), float(_reference_loss(s, t, y, T, alpha))
            assert abs(got - want) < 1e-4 * max(1.0, abs(want)), (
                f"T={T}, alpha={alpha}: loss {got:.5f}, expected {want:.5f} (KL(teacher || student) on softmax(z/T), "
                "batch mean, times T^2; plus (1-alpha) times the cross-entropy)")


def test_soft_term_scales_with_t_squared(sub):
    """the soft term is T^2 times the KL of the softened distributions, and zero when student equals teacher"""
    s, t, y = _logits(seed=1)
    for T in (2.0, 8.0):
        kl = F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction="batchmean")
        got = float(sub.distillation_loss(s, t, y, T, 1.0))
        assert abs(got - T * T * float(kl)) < 1e-4, f"T={T}: soft term {got:.5f}, expected T^2 * KL = {T * T * float(kl):.5f}"
    assert abs(float(sub.distillation_loss(t, t, y, 4.0, 1.0))) < 1e-5, "a student equal to its teacher has no soft loss"


def test_unlabelled_rows(sub):
    """rows labelled -1 add no hard loss; the cross-entropy is the mean over labelled rows"""
    s, t, y = _logits(seed=2)
    y = y.clone()
    y[3:] = -1
    got, want = float(sub.distillation_loss(s, t, y, 2.0, 0.0)), float(F.cross_entropy(s[:3], y[:3]))
    assert abs(got - want) < 1e-5, f"alpha=0 with 3 labelled rows: loss {got:.5f}, expected CE over those rows {want:.5f}"
    y[:] = -1
    got = float(sub.distillation_loss(s, t, y, 2.0, 0.5))
    want = float(_reference_loss(s, t, y, 2.0, 0.5))
    assert abs(got - want) < 1e-5, f"no labelled row: loss {got:.5f}, expected only the soft term {want:.5f}"


def test_gradients_reach_only_the_student(sub):
    """backward through the loss gives the student's logits a gradient and the teacher's none"""
    s, t, y = _logits(seed=3)
    s, t = s.clone().requires_grad_(), t.clone().requires_grad_()
    sub.distillation_loss(s, t, y, 4.0, 0.9).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0, "the student's logits got no gradient"
    assert t.grad is None or t.grad.abs().sum() == 0, "the teacher's logits got a gradient: detach them (or no_grad)"


def test_distilled_student_is_closer_to_the_teacher(sub):
    """with 20 labels and 1500 inputs, distillation beats the same student trained on the labels alone"""
    teacher, X = _teacher(), _inputs(1500, seed=0)
    with torch.no_grad():
        labels = teacher(X).argmax(dim=1)
    y = torch.full_like(labels, -1)
    y[:20] = labels[:20]
    student = sub.train_student(_student(), teacher, X, y)
    alone = _student()  # the same architecture and start, trained on the 20 labels only
    optimizer = torch.optim.Adam(alone.parameters(), lr=3e-3)
    for _ in range(300):
        loss = F.cross_entropy(alone(X[:20]), labels[:20])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    fresh = _inputs(2000, seed=1)
    with torch.no_grad():
        t = teacher(fresh)
        agree = [(m(fresh).argmax(1) == t.argmax(1)).float().mean().item() for m in (student.eval(), alone.eval())]
        kls = [F.kl_div(F.log_softmax(m(fresh), 1), F.softmax(t, 1), reduction="batchmean").item() for m in (student, alone)]
    assert agree[0] >= agree[1] + 0.15, (f"agreement with the teacher: distilled {agree[0]:.3f}, labels alone "
                                         f"{agree[1]:.3f}; distillation should win by at least 0.15")
    assert kls[0] <= 0.5 * kls[1], f"KL to the teacher: distilled {kls[0]:.3f}, labels alone {kls[1]:.3f}"


EXERCISE = Exercise(
    name="distill_student", title="Exercise · Distill a small student", task=TASK, stub=STUB,
    tests=(test_loss_matches_kl_div_and_cross_entropy, test_soft_term_scales_with_t_squared, test_unlabelled_rows,
           test_gradients_reach_only_the_student, test_distilled_student_is_closer_to_the_teacher),
    protected_modules=('labkit.distill',),
)
