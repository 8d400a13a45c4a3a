"""What an exercise is: task, stub, visible tests, and what its grading must protect.

An exercise lives in `labkit/exercises/<name>.py` and defines `EXERCISE = Exercise(...)`. Its reference solution
lives in `labkit/solutions/<name>.py` and its hidden tests in `labkit/hidden_tests/<name>.py` (`TESTS = (...)`), so
a handout can leave both out. This module imports neither: exercises import it, never the other way round.
"""
from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from labkit.paths import EXERCISE_DIR as STUDENT_DIR, PACKAGE_DIR

SOLUTIONS_DIR = PACKAGE_DIR / "solutions"
HIDDEN_PACKAGE = "labkit.hidden_tests"


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
    # The course's own worked implementation of what is graded (e.g. "labkit.metrics"): a submission may not
    # import it, and the tests must not import it lazily (they import it at module level, before the submission).
    protected_modules: tuple[str, ...] = field(default=())
    # Called by the grader before it imports the submission: compute expected values from the oracle then,
    # while nothing can patch it (see metrics_module).
    prepare: Callable[[], None] | None = None
    # > 1: the grader starts this many runners at once, each under its own limits and audit hook, with
    # LABKIT_RANK, LABKIT_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set; a test passes only if it passes on every
    # rank. Added for ddp_training: its tests need two real processes, and the hook rightly refuses a
    # submission's (or a test's) process start, so the ranks are started from outside, by the grader.
    world_size: int = 1

    @property
    def module(self) -> str:
        return f"labkit.exercises.{self.name}"

    @property
    def notebook(self) -> Path:
        folder = STUDENT_DIR / "bugs" if self.kind == "bug" else STUDENT_DIR
        return folder / f"{self.name}.ipynb"

    @property
    def hidden_module(self) -> str:
        return f"{HIDDEN_PACKAGE}.{self.name}"

    @property
    def hidden_tests(self) -> tuple[Callable, ...]:
        """Tests that grade but are never shown: `labkit grade --hidden` runs them after the visible ones."""
        try:
            return tuple(importlib.import_module(self.hidden_module).TESTS)
        except ModuleNotFoundError as err:
            if err.name != self.hidden_module:
                raise
            return ()

    @property
    def graded_names(self) -> tuple[str, ...]:
        """The functions and classes the stub defines at top level: the submission must define them itself."""
        tree = ast.parse(self.stub)
        kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        return tuple(node.name for node in tree.body if isinstance(node, kinds))

    def reference_source(self) -> str:
        """The reference solution's source (never shipped in a handout)."""
        path = SOLUTIONS_DIR / f"{self.name}.py"
        if not path.exists():
            raise FileNotFoundError(f"exercise {self.name!r} has no reference solution at {path}")
        return path.read_text()
