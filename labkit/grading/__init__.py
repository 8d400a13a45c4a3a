"""Exercise grading: a registry of exercises, a sandboxed grader with time and memory limits, handouts.

Taught in notebooks/exercises (see the README's exercise list).
"""
from labkit.grading.registry import Exercise, all_exercises, get_exercise
from labkit.grading.grader import GradeReport, TestResult, grade_notebook, grade_source

__all__ = ["Exercise", "all_exercises", "get_exercise", "GradeReport", "TestResult", "grade_notebook",
           "grade_source"]
