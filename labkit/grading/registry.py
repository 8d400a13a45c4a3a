"""What an exercise is, and where to find them all.

An exercise lives in `labkit/exercises/<name>.py` and defines `EXERCISE = Exercise(...)`: the task, the stub
the student starts from, and visible tests (functions taking the student's module). Its reference solution
lives apart, in `labkit/solutions/<name>.py`, so a handout can leave it out.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import labkit.exercises

SOLUTIONS_DIR = Path(__file__).resolve().parent.parent / "solutions"
STUDENT_DIR = Path(__file__).resolve().parent.parent.parent / "notebooks" / "exercises"


@dataclass(frozen=True)
class Exercise:
    name: str                      # file stem, e.g. "metrics_module"
    title: str
    task: str                      # markdown shown to the student
    stub: str                      # source the student starts from (a find-the-bug item: the buggy code)
    tests: tuple[Callable, ...]    # each takes the student's module; raises AssertionError with a hint on failure
    kind: str = "exercise"         # "exercise" or "bug"
    time_limit_s: float = 45.0     # wall clock for import + all tests; the whole grade stays under a minute
    memory_limit_mb: int = 3000    # resident memory of the grading process
    bug_tests: tuple[str, ...] = field(default=())   # for kind="bug": the tests aimed at the bug

    @property
    def module(self) -> str:
        return f"labkit.exercises.{self.name}"

    @property
    def notebook(self) -> Path:
        folder = STUDENT_DIR / "bugs" if self.kind == "bug" else STUDENT_DIR
        return folder / f"{self.name}.ipynb"

    def reference_source(self) -> str:
        """The reference solution's source (never shipped in a handout)."""
        path = SOLUTIONS_DIR / f"{self.name}.py"
        if not path.exists():
            raise FileNotFoundError(f"exercise {self.name!r} has no reference solution at {path}")
        return path.read_text()


def all_exercises() -> list[Exercise]:
    """Every registered exercise, exercises first, then bugs, each by name."""
    found = []
    for info in pkgutil.iter_modules(labkit.exercises.__path__):
        if not info.name.startswith("_"):
            found.append(importlib.import_module(f"labkit.exercises.{info.name}").EXERCISE)
    return sorted(found, key=lambda e: (e.kind != "exercise", e.name))


def get_exercise(name: str) -> Exercise:
    """The exercise called `name`; a clear error listing the valid names otherwise."""
    # Import only that exercise's module: the grading process should not pay for every other one's imports.
    if name.isidentifier() and not name.startswith("_"):
        try:
            return importlib.import_module(f"labkit.exercises.{name}").EXERCISE
        except ModuleNotFoundError as err:
            if err.name != f"labkit.exercises.{name}":
                raise
    exercises = {e.name: e for e in all_exercises()}
    if name not in exercises:
        raise KeyError(f"no exercise named {name!r}; choose one of: {', '.join(sorted(exercises))}")
    return exercises[name]
