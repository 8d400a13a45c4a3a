"""Drift detectors from `river` (ADWIN, Page-Hinkley) watching a model's error stream, and a learner they wake.

A detector reads one number per labelled prediction (1 = wrong, 0 = right) and says when the mean has
shifted. Detection delay = samples between the true drift and the alarm; an alarm before the drift is a
false alarm. DetectorTriggeredLearner keeps the deployed model frozen (cheap, no risk) until its detector
fires, then updates on every batch. Taught in 14_online_learning.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from labkit.online.learners import NaiveLearner

DETECTORS = ("adwin", "page_hinkley")


def make_detector(kind: str, **params):
    """A fresh river detector: "adwin" (adaptive window, delta=0.002) or "page_hinkley" (cumulative deviation)."""
    from river import drift  # lazy: river takes ~1 s to import

    if kind == "adwin":
        return drift.ADWIN(**params)
    if kind == "page_hinkley":
        return drift.PageHinkley(**{"min_instances": 30, "threshold": 20.0, "mode": "up", **params})
    raise ValueError(f"detector must be one of {DETECTORS}; got {kind!r}")


@dataclass(frozen=True)
class Detection:
    """Where a detector fired on an error stream whose true drift is at drift_at."""
    kind: str
    alarms: tuple[int, ...]   # sample indices at which drift_detected was True
    drift_at: int

    @property
    def false_alarms(self) -> int:
        return sum(a < self.drift_at for a in self.alarms)

    @property
    def first_after(self) -> int | None:
        """The first alarm at or after the drift, None if it never fired."""
        return next((a for a in self.alarms if a >= self.drift_at), None)

    @property
    def delay(self) -> int | None:
        """Samples from the drift to the first alarm after it (None: missed)."""
        first = self.first_after
        return None if first is None else first - self.drift_at


def detect(errors: np.ndarray, kind: str, drift_at: int, **params) -> Detection:
    """Feed a 0/1 error stream to a detector; every sample index at which it raised an alarm."""
    detector, alarms = make_detector(kind, **params), []
    for i, e in enumerate(errors):
        detector.update(float(e))
        if detector.drift_detected:
            alarms.append(i)
    return Detection(kind, tuple(alarms), drift_at)


class DetectorTriggeredLearner(NaiveLearner):
    """Frozen until the detector sees drift in its own errors, then one SGD step per batch from then on."""

    def __init__(self, model: torch.nn.Module, kind: str = "adwin", lr: float = 0.05, name: str | None = None):
        super().__init__(model, lr, name or f"on {kind}")
        self.detector, self.kind = make_detector(kind), kind
        self.seen, self.alarm_at = 0, None

    def update(self, X: torch.Tensor, y: torch.Tensor) -> None:
        if self.alarm_at is None:
            wrong = (self.predict(X) != y).numpy()
            for i, e in enumerate(wrong):
                self.detector.update(float(e))
                if self.detector.drift_detected and self.alarm_at is None:
                    self.alarm_at = self.seen + i
        self.seen += len(y)
        if self.alarm_at is not None:
            self._step(X, y)
