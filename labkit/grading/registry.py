"""Where to find the exercises: `labkit/exercises/<name>.py`, each defining `EXERCISE = Exercise(...)`.

The registry finds them by name on demand; it imports no exercise at module import, so the arrow runs one way:
exercises import `labkit.grading.exercise`, the registry imports exercises only when asked.
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil

from labkit.grading.exercise import SOLUTIONS_DIR, STUDENT_DIR, Exercise

EXERCISES_PACKAGE = "labkit.exercises"

__all__ = ["Exercise", "SOLUTIONS_DIR", "STUDENT_DIR", "all_exercises", "exercise_names", "get_exercise"]


def exercise_names() -> list[str]:
    """The module names under labkit/exercises, found on disk without importing any of them."""
    spec = importlib.util.find_spec(EXERCISES_PACKAGE)
    return sorted(info.name for info in pkgutil.iter_modules(spec.submodule_search_locations)
                  if not info.name.startswith("_"))


def all_exercises() -> list[Exercise]:
    """Every registered exercise, exercises first, then bugs, each by name."""
    found = [importlib.import_module(f"{EXERCISES_PACKAGE}.{name}").EXERCISE for name in exercise_names()]
    return sorted(found, key=lambda e: (e.kind != "exercise", e.name))


def get_exercise(name: str) -> Exercise:
    """The exercise called `name`; a clear error listing the valid names otherwise."""
    # Import only that exercise's module: the grading process should not pay for every other one's imports.
    names = exercise_names()
    if name not in names:
        raise KeyError(f"no exercise named {name!r}; choose one of: {', '.join(names)}")
    return importlib.import_module(f"{EXERCISES_PACKAGE}.{name}").EXERCISE
