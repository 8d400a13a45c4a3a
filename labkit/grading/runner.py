"""Runs inside the grading subprocess: import the submission, run each test, print one JSON line per test.

Not for direct use: `labkit grade` starts it with a time and memory limit. The student's own prints go to
stderr so they cannot forge result lines.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import time
import traceback


def _describe(err: BaseException, submission_path: str) -> str:
    """'TypeError: …' plus the line of the student's file where it happened, if any."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == submission_path]
    where = f" (your line {frames[-1].lineno}: {frames[-1].line})" if frames else ""
    if isinstance(err, NotImplementedError):
        return f"not implemented yet: {err}{where}"
    return f"{type(err).__name__}: {err}{where}"


def _load(submission_path: str):
    spec = importlib.util.spec_from_file_location("submission", submission_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["submission"] = module
    spec.loader.exec_module(module)
    return module


def main(exercise_name: str, submission_path: str) -> None:
    results = sys.stdout
    sys.stdout = sys.stderr  # the student's prints must not mix with result lines
    from labkit.grading.registry import get_exercise

    exercise = get_exercise(exercise_name)

    def emit(**row) -> None:
        results.write(json.dumps(row) + "\n")
        results.flush()

    try:
        module = _load(submission_path)
    except BaseException as err:  # SyntaxError, SystemExit, anything the student's code raised
        emit(import_error=_describe(err, submission_path))
        return
    for test in exercise.tests:
        start = time.perf_counter()
        try:
            test(module)
            passed, message = True, "ok"
        except AssertionError as err:
            passed, message = False, str(err) or "assertion failed"
        except BaseException as err:
            passed, message = False, _describe(err, submission_path)
        emit(test=test.__name__, passed=passed, message=message, seconds=time.perf_counter() - start)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
