"""Serving-config search: each trial starts a real `labkit serve` and measures goodput under a p99 SLO.

The objective is goodput (answers within the SLO per second) at the highest offered rate of a ladder that
still met the SLO; the constraint is p99 <= SLO, stored with Trial.set_constraint so the TPE sampler ranks infeasible
trials below every feasible one. Trials run in rounds: `parallel` configs are asked for at once, their
servers start together (start-up is mostly imports), and are measured one after another. The same code
runs a grid of equal budget (enqueued points), and `verify` re-measures the winner against the default on
servers started fresh for it, so the number reported is not the one the search selected on (winner's curse).
Taught in 11_dynamic_tuning.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable

from labkit.serve.benchmark import running
from labkit.serve.config import ServeConfig
from labkit.serve.loadgen import run_closed_loop, run_open_loop
from labkit.serve.slo import goodput_at_slo, meets_slo

# Every lever a trial may switch, as the choices Optuna picks from (suggest_categorical).
SPACE: dict[str, tuple] = {
    "max_batch": (4, 8, 16, 32, 64),
    "max_wait_ms": (0.0, 1.0, 2.0, 4.0, 8.0),
    "engine": ("torch", "onnx"),
    "workers": ("inline", "thread", "process"),
    "threads": (1, 2),
    "num_workers": (1, 2),
    "queue_limit": (32, 128, 256),
}


@dataclass(frozen=True)
class Probe:
    """How one config is measured: an open-loop ladder of offered rates (req/s), stopping at the first miss."""
    slo_ms: float = 25.0                 # p99 objective of ok answers, client side
    rates_rps: tuple[float, ...] = (200.0, 400.0, 800.0)
    duration_s: float = 1.5              # seconds of load per rung
    timeout_s: float = 0.5               # a request slower than this is a timeout (bounds an overloaded rung)
    max_failed: float = 0.01             # rejected + errors + timeouts allowed within the SLO
    warmup_s: float = 0.3                # closed-loop burst before measuring (lazy initialisation)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.rates_rps or not self.slo_ms > 0 or not self.duration_s > 0:
            raise ValueError(f"need rates, slo_ms > 0, duration_s > 0; got {self}")


def calibrate(url: str, bodies: list[bytes], duration_s: float = 1.0, users: int = 16,
              low_share: float = 0.25, repeats: int = 3, seed: int = 0) -> dict:
    """A reference server's scale on this machine now: closed-loop capacity (req/s) at `users`, and the latency
    floor: the lowest p99 (ms) of `repeats` short open loops at low_share of that capacity (one scheduling
    spike on a shared machine moves a single p99; it rarely moves all of them)."""
    from labkit.serve.benchmark import http_bound

    capacity = http_bound(url, bodies, users=users, duration_s=duration_s)
    floors = [run_open_loop(url, bodies, low_share * capacity, duration_s=duration_s / repeats, timeout_s=5.0,
                            seed=seed + k).summary()["p99_ms"] for k in range(repeats)]
    return {"capacity_rps": capacity, "floor_p99_ms": float(min(floors))}


def slo_for(floor_p99_ms: float, minimum_ms: float, factor: float = 2.0, step_ms: float = 5.0,
            cap: float = 4.0) -> float:
    """The SLO: minimum_ms, or factor x the measured floor rounded up to step_ms when the machine is slower,
    but never more than cap x minimum_ms (beyond that the SLO would stop being a latency objective)."""
    if math.isnan(floor_p99_ms):
        return minimum_ms
    return min(cap * minimum_ms, max(minimum_ms, math.ceil(factor * floor_p99_ms / step_ms) * step_ms))


def config_from(params: dict, base: ServeConfig) -> ServeConfig:
    """base with the searched fields replaced (unknown names raise)."""
    return base.replace(**params)


def suggest_config(trial, space: dict[str, tuple], base: ServeConfig) -> ServeConfig:
    """Optuna picks one choice per lever (define-by-run); single-choice levers are still recorded."""
    return config_from({name: trial.suggest_categorical(name, list(choices)) for name, choices in space.items()},
                       base)


def measure(url: str, bodies: list[bytes], probe: Probe) -> dict:
    """Climb the rate ladder until a rung misses the SLO: goodput and p99 at the highest rung that met it
    (or at the first rung, when none did), and how many rungs were run."""
    if probe.warmup_s > 0:
        run_closed_loop(url, bodies, users=8, duration_s=probe.warmup_s, timeout_s=5.0)
    best, first = None, None
    for k, rate in enumerate(sorted(probe.rates_rps)):
        s = run_open_loop(url, bodies, rate, duration_s=probe.duration_s, timeout_s=probe.timeout_s,
                          seed=probe.seed + k).summary(probe.slo_ms)
        first = first or s
        if not meets_slo(s, probe.slo_ms, probe.max_failed):
            break
        best = s
    s = best or first
    p99 = s["p99_ms"] if not math.isnan(s["p99_ms"]) else 1e6  # nothing answered: infinitely late
    return {"goodput_rps": s["goodput_rps"], "p99_ms": p99, "rate_rps": s["offered_rps"],
            "feasible": best is not None, "rungs": k + 1, "failed_fraction": s["failed_fraction"]}


def record(trial, result: dict, slo_ms: float) -> None:
    """Store a measurement on the trial: user attributes, and the constraint p99 - SLO (<= 0 is feasible;
    Optuna 5's Trial.set_constraint, which the TPE sampler reads; constraints_func is deprecated since 5.0)."""
    for key, value in result.items():
        trial.set_user_attr(key, value)
    trial.set_constraint("p99_minus_slo_ms", result["p99_ms"] - slo_ms)


def run_search(study, n_trials: int, bodies: list[bytes], probe: Probe, space: dict[str, tuple],
               base: ServeConfig, parallel: int = 4) -> object:
    """Ask-and-tell in rounds of `parallel`: start those servers together, measure each, tell Optuna."""
    return run_searches([(study, space)], n_trials, bodies, probe, base, parallel)[0][0]


def run_searches(searches: list[tuple[object, dict]], n_trials: int, bodies: list[bytes],
                 probe: Probe | Callable[[str], Probe], base: ServeConfig, parallel: int = 4) -> tuple[list, Probe]:
    """Several (study, space) pairs with the same trial budget, in rounds: each round asks every study for up
    to `parallel` trials, starts all their servers at once, measures them one by one, and tells each study.
    `probe` may be a function of a reference server's /predict URL (e.g. calibrated on it): that server runs
    `base` and starts with the first round's servers, which saves a start-up. Returns (studies, probe)."""
    done = 0
    while done < n_trials:
        k = min(parallel, n_trials - done)
        asked = [(study, study.ask(), space) for study, space in searches for _ in range(k)]
        configs = [suggest_config(trial, space, base) for _, trial, space in asked]
        reference = [base] if callable(probe) else []
        with running(*reference, *configs) as servers:
            if reference:
                probe = probe(servers[0].url + "/predict")
            for (study, trial, _), server in zip(asked, servers[len(reference):]):
                result = measure(server.url + "/predict", bodies, probe)
                record(trial, result, probe.slo_ms)
                study.tell(trial, result["goodput_rps"])
        done += k
    return [study for study, _ in searches], probe


def tpe_study(seed: int = 0, startup_trials: int = 4):
    """A study maximising goodput with a TPE sampler (it reads each trial's p99 constraint, see `record`)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials, constant_liar=True)
    return optuna.create_study(direction="maximize", sampler=sampler, study_name="serving-tpe")


def grid_space(axes: dict[str, tuple], base: ServeConfig) -> dict[str, tuple]:
    """The full SPACE with every lever not on a grid axis pinned to base's value."""
    return {name: axes.get(name, (getattr(base, name),)) for name in SPACE}


def grid_points(axes: dict[str, tuple]) -> list[dict]:
    """Every combination of the axes' values, in order (the first axis varies slowest)."""
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def grid_study(axes: dict[str, tuple], base: ServeConfig, seed: int = 0):
    """A study that asks for the grid's points in order: each is enqueued (Optuna's enqueue_trial), so the
    trials stay ask-and-tell (GridSampler would call study.stop() at the end, which ask-and-tell forbids)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed),
                                study_name="serving-grid")
    for point in grid_points(axes):
        study.enqueue_trial({name: getattr(base, name) for name in SPACE} | point)
    return study


def grid_size(axes: dict[str, tuple]) -> int:
    """Points in the grid: the product of the axes' lengths."""
    return math.prod(len(v) for v in axes.values())


def trials_table(study):
    """One row per trial: its levers, goodput, p99, feasibility, rate reached (pandas DataFrame)."""
    import pandas as pd

    rows = [{"trial": t.number, **t.params, **t.user_attrs} for t in study.trials if t.value is not None]
    return pd.DataFrame(rows).set_index("trial")


def best_config(study, base: ServeConfig) -> tuple[ServeConfig, dict]:
    """The feasible trial with the highest goodput: (its config, its row). When no trial met the SLO, the
    highest goodput of all, with row["feasible"] False (a loaded machine can make every trial miss)."""
    measured = [t for t in study.trials if t.value is not None]
    if not measured:
        raise ValueError("the study has no measured trial")
    best = max(measured, key=lambda t: (bool(t.user_attrs.get("feasible")), t.value))
    return config_from(best.params, base), {"trial": best.number, **best.params, **best.user_attrs}


@dataclass(frozen=True)
class Verification:
    """goodput_at_slo's ladder for a fresh re-measurement of finalists (more rungs, bisection)."""
    rates_rps: tuple[float, ...] = (100.0, 200.0, 300.0, 450.0, 600.0, 800.0, 1000.0)
    duration_s: float = 1.5
    refine: int = 1
    repeats: int = 1                     # whole ladders per config, interleaved between configs
    patience: int = 2                    # misses in a row that end a ladder


def verify(urls: dict[str, str], bodies: list[bytes], probe: Probe, check: Verification) -> object:
    """Goodput at the SLO (labkit.serve.slo.goodput_at_slo) of servers started fresh for it (name -> /predict
    URL), taking turns `repeats` times so drift on a shared machine hits each alike. One row per ladder."""
    import pandas as pd

    rows = []
    for repeat, (name, url) in itertools.product(range(check.repeats), urls.items()):
        run_closed_loop(url, bodies, users=8, duration_s=probe.warmup_s or 0.3, timeout_s=5.0)
        found = goodput_at_slo(url, bodies, probe.slo_ms, check.rates_rps, duration_s=check.duration_s,
                               refine=check.refine, max_failed=probe.max_failed, timeout_s=probe.timeout_s,
                               patience=check.patience)
        passed = found.table[found.table["meets_slo"]]
        p99 = float(passed.loc[passed["offered_rps"].idxmax(), "p99_ms"]) if len(passed) else float("nan")
        rows.append({"config": name, "repeat": repeat, "goodput_rps": found.goodput_rps,
                     "rate_rps": found.rate_rps, "p99_ms_at_rate": p99, "rungs": len(found.table)})
    return pd.DataFrame(rows)
