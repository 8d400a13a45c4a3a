"""Hyperparameter search with Optuna: learning rate, weight decay, dropout and batch size of an MLP on digits.

Every trial trains from the same seed and reports its validation accuracy after each epoch; a pruner stops
trials whose curve falls below the median of earlier trials at the same epoch. `compare_pruning` runs the
same sampled trials with and without the pruner, so the time saved is the pruner's alone.
Taught in 11_dynamic_tuning.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from labkit.data import Split, make_loader
from labkit.models import MLP
from labkit.train import TrainConfig, evaluate, make_optimizer, set_seed, train_one_epoch


@dataclass(frozen=True)
class HyperParams:
    """One point of the search space; the defaults are the course's untuned TrainConfig (Adam, lr 1e-3)."""
    lr: float = 1e-3
    weight_decay: float = 0.0
    dropout: float = 0.0
    batch_size: int = 64


@dataclass(frozen=True)
class SearchSpace:
    """Ranges Optuna samples from: learning rate and weight decay on a log scale."""
    lr: tuple[float, float] = (1e-4, 3e-2)
    weight_decay: tuple[float, float] = (1e-6, 1e-2)
    dropout: tuple[float, float] = (0.0, 0.5)
    batch_sizes: tuple[int, ...] = (16, 32, 64, 128)


def suggest(trial, space: SearchSpace = SearchSpace()) -> HyperParams:
    """Sample one HyperParams from the trial (Optuna's define-by-run API)."""
    return HyperParams(lr=trial.suggest_float("lr", *space.lr, log=True),
                       weight_decay=trial.suggest_float("weight_decay", *space.weight_decay, log=True),
                       dropout=trial.suggest_float("dropout", *space.dropout),
                       batch_size=trial.suggest_categorical("batch_size", list(space.batch_sizes)))


def train_and_score(split: Split, params: HyperParams, epochs: int, seed: int = 0,
                    report=None) -> dict[str, float]:
    """Train an MLP with `params`; report(val_accuracy, epoch) after each epoch may raise to stop early.

    Returns the final validation and test accuracy and the epochs run."""
    set_seed(seed)
    model = MLP(split.X_train[0].numel(), hidden=(128, 64), num_classes=len(split.classes), dropout=params.dropout)
    optimizer = make_optimizer(model, TrainConfig(lr=params.lr, weight_decay=params.weight_decay, optimizer="adam"))
    train = make_loader(split.X_train, split.y_train, batch_size=params.batch_size, shuffle=True, seed=seed)
    val = make_loader(split.X_val, split.y_val, batch_size=512)
    val_acc = 0.0
    for epoch in range(epochs):
        train_one_epoch(model, train, optimizer)
        val_acc = evaluate(model, val)[1]
        if report is not None:
            report(val_acc, epoch)
    test_acc = evaluate(model, make_loader(split.X_test, split.y_test, batch_size=512))[1]
    return {"val_accuracy": val_acc, "test_accuracy": test_acc, "epochs": epochs}


def objective(split: Split, epochs: int, space: SearchSpace = SearchSpace(), seed: int = 0):
    """An Optuna objective: validation accuracy, reported each epoch so a pruner can stop the trial."""
    import optuna

    def run(trial) -> float:
        def report(val_acc: float, epoch: int) -> None:
            trial.report(val_acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"val accuracy {val_acc:.3f} after epoch {epoch}")

        scores = train_and_score(split, suggest(trial, space), epochs, seed, report)
        trial.set_user_attr("test_accuracy", scores["test_accuracy"])
        return scores["val_accuracy"]
    return run


def make_pruner(enabled: bool, startup_trials: int = 4, warmup_epochs: int = 1):
    """MedianPruner (stop below the median of earlier trials at the same epoch) or NopPruner (never stop)."""
    import optuna

    if not enabled:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs)


def run_study(split: Split, n_trials: int, epochs: int, pruning: bool, sampler: str = "random",
              space: SearchSpace = SearchSpace(), seed: int = 0, startup_trials: int = 4) -> tuple[object, float]:
    """(study, wall seconds): n_trials of `objective`, maximising validation accuracy."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler}
    study = optuna.create_study(direction="maximize", sampler=samplers[sampler](seed=seed),
                                pruner=make_pruner(pruning, startup_trials))
    start = time.perf_counter()
    study.optimize(objective(split, epochs, space, seed), n_trials=n_trials)
    return study, time.perf_counter() - start


def study_summary(study) -> dict[str, float]:
    """Counts of complete and pruned trials, epochs trained in all, and the best trial's accuracies."""
    import optuna

    states = [t.state for t in study.trials]
    best = study.best_trial
    return {"trials": len(states), "complete": states.count(optuna.trial.TrialState.COMPLETE),
            "pruned": states.count(optuna.trial.TrialState.PRUNED),
            "epochs_trained": sum(len(t.intermediate_values) for t in study.trials),
            "best_trial": best.number, "best_val_accuracy": best.value,
            "best_test_accuracy": best.user_attrs["test_accuracy"]}


def compare_pruning(split: Split, n_trials: int, epochs: int, seed: int = 0,
                    startup_trials: int = 4) -> dict[str, dict]:
    """The same random-sampled trials with the MedianPruner and without: wall time, pruned count, best.

    A RandomSampler draws the same parameters whatever earlier trials scored, so both studies try the same
    points and the difference in wall time is the pruner's alone (a TPE sampler would diverge)."""
    out = {}
    for name, pruning in (("no pruning", False), ("median pruner", True)):
        study, wall_s = run_study(split, n_trials, epochs, pruning, "random", seed=seed, startup_trials=startup_trials)
        out[name] = {"study": study, "wall_s": wall_s, **study_summary(study)}
    return out
