"""Update policies as small decision rules: a canary is promoted, kept waiting or rolled back from live numbers.

Live labelled traffic gives each version a running (items, correct, errors) tally. The canary policy compares
the canary's tally with the stable version's over the same period: it rolls back as soon as the canary is
clearly worse (accuracy more than max_drop below, or a higher error rate), and promotes once it has answered
enough items without being worse. Taught in 14_online_learning.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

DECISIONS = ("wait", "promote", "rollback")


@dataclass
class Tally:
    """What one version did with live traffic: answers, failed answers, labelled items and how many were right."""
    answers: int = 0
    errors: int = 0       # 5xx answers and failed connections
    items: int = 0        # labelled inputs answered
    correct: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.items if self.items else math.nan

    @property
    def error_rate(self) -> float:
        return self.errors / self.answers if self.answers else math.nan

    def add(self, ok: bool, items: int = 0, correct: int = 0) -> None:
        self.answers += 1
        self.errors += not ok
        self.items += items
        self.correct += correct


@dataclass(frozen=True)
class CanaryPolicy:
    """Roll back when the canary's accuracy falls max_drop below stable's; promote after promote_items items."""
    min_items: int = 100          # labelled canary items before any verdict (a 5% canary at 100 req/s: ~20 s)
    promote_items: int = 300      # labelled canary items after which a canary that is not worse is promoted
    max_drop: float = 0.05        # accuracy the canary may lose against stable (absolute)
    max_error_rate: float = 0.01  # canary error rate above stable's by more than this -> rollback

    def __post_init__(self) -> None:
        if not 1 <= self.min_items <= self.promote_items:
            raise ValueError(f"need 1 <= min_items <= promote_items; got {self.min_items}, {self.promote_items}")
        if not (0 <= self.max_drop <= 1 and 0 <= self.max_error_rate <= 1):
            raise ValueError(f"max_drop and max_error_rate must be in [0, 1]; got {self.max_drop}, "
                             f"{self.max_error_rate}")

    def decide(self, stable: Tally, canary: Tally) -> str:
        """'rollback', 'promote' or 'wait', from the two tallies taken over the same period."""
        if canary.answers and stable.answers and canary.error_rate > stable.error_rate + self.max_error_rate \
                and canary.answers >= 20:
            return "rollback"
        if canary.items < self.min_items or stable.items < self.min_items:
            return "wait"
        if canary.accuracy < stable.accuracy - self.max_drop:
            return "rollback"
        return "promote" if canary.items >= self.promote_items else "wait"


@dataclass(frozen=True)
class ShadowReport:
    """How a shadow (candidate answering nobody) compared with the version that answered, on the same requests."""
    requests: int         # requests mirrored and answered by both
    agreement: float      # fraction of inputs where both gave the same label
    primary_accuracy: float
    shadow_accuracy: float


def shadow_report(primary: Tally, shadow: Tally, agree: int) -> ShadowReport:
    """Summarize the mirrored requests: primary and shadow tallies over the same inputs and their agreement."""
    return ShadowReport(shadow.answers, agree / shadow.items if shadow.items else math.nan,
                        primary.accuracy, shadow.accuracy)
